/*
 * bufferd-notify: send sd_notify(3) datagrams for the daemon.
 *
 * Node.js cannot send Unix datagrams, and a one-shot sender (systemd-notify)
 * exits before the service manager has read its message, which then cannot
 * be attributed to the unit (see sd_notify(3)). This helper stays alive as a
 * child of the daemon, inside the service's cgroup, for as long as the
 * daemon runs: each line on stdin is one notification, with '\t' standing
 * for the newline between assignments ("RELOADING=1\tMONOTONIC_USEC=123").
 * It exits when stdin closes. NOTIFY_SOCKET may be a path or "@abstract".
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(void) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "bufferd-notify: NOTIFY_SOCKET is not set or too long\n");
    return 2;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("bufferd-notify: socket");
    return 1;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t len = strlen(path);
  memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
  char line[4096];
  while (fgets(line, sizeof line, stdin) != NULL) {
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
    if (n == 0) continue;
    for (size_t i = 0; i < n; i++)
      if (line[i] == '\t') line[i] = '\n';
    if (sendto(fd, line, n, MSG_NOSIGNAL, (struct sockaddr *)&addr, alen) < 0) perror("bufferd-notify: sendto");
  }
  return 0;
}
