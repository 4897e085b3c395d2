"""Terminal ioctls: window size, controlling tty, pty unlock/number."""

INCLUDES = """
#include <sys/ioctl.h>
#include <termios.h>
"""

TYPES = """
struct winsize {
    unsigned short ws_row;
    unsigned short ws_col;
    unsigned short ws_xpixel;
    unsigned short ws_ypixel;
};
static const unsigned long TIOCSWINSZ;
static const unsigned long TIOCGWINSZ;
static const unsigned long TIOCSCTTY;
static const unsigned long TIOCSPTLCK;
static const unsigned long TIOCGPTN;
static const unsigned long TIOCGPTPEER;
"""

FUNCTIONS = """
int barerun_ioctl_winsize(int fd, unsigned long req, struct winsize *ws);
int barerun_ioctl_int(int fd, unsigned long req, int *value);
int barerun_ioctl_arg(int fd, unsigned long req, unsigned long arg);
"""

CUSTOMIZATIONS = """
#ifndef TIOCGPTPEER
#define TIOCGPTPEER 0x5441
#endif
int barerun_ioctl_winsize(int fd, unsigned long req, struct winsize *ws)
{
    return ioctl(fd, req, ws);
}

int barerun_ioctl_int(int fd, unsigned long req, int *value)
{
    return ioctl(fd, req, value);
}

int barerun_ioctl_arg(int fd, unsigned long req, unsigned long arg)
{
    return ioctl(fd, req, arg);
}
"""
