/*
 * rusage-run - runs a command and prints its resource use on stderr as
 * "rusage utime=S stime=S maxrss_kib=N status=N".
 *
 * The benchmarks start clients through this small program rather than
 * from Python, because a child forked from a large process carries that
 * process's resident size into its own peak until exec, and ru_maxrss
 * would report the parent's size instead of the client's.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct rusage ru;
    int status = 0;
    pid_t pid;

    if (argc < 2) {
        fprintf(stderr, "usage: rusage-run COMMAND [ARG...]\n");
        return 64;
    }
    pid = fork();
    if (pid < 0)
        return 71;
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) < 0)
        return 71;
    fprintf(stderr, "rusage utime=%ld.%06ld stime=%ld.%06ld maxrss_kib=%ld "
            "status=%d\n", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
            (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
            ru.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : 128);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}
