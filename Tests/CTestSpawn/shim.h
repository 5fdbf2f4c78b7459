// glibc functions the test support's process spawner needs that Swift's Glibc module hides
// (they are declared only under _GNU_SOURCE). All exist in glibc 2.34 and later.
#include <spawn.h>

extern int pipe2(int pipefd[2], int flags);
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *__restrict actions, const char *__restrict path);
