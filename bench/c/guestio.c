/* What a qemu does for its guest, as an unmonitored process: block I/O with
 * pread/pwrite on an image file, and network I/O through a tap device.
 *   guestio IMAGE TAP N     N rounds of: pwrite 4 KiB and pread 4 KiB at
 *                           random offsets of a 64 MiB image, write one
 *                           1,400-byte Ethernet frame to the tap, and a
 *                           non-blocking read from it
 * Run inside the network namespace that holds TAP. */
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	long n = atol(argv[3]);
	const long size = 64L << 20;
	int img = open(argv[1], O_RDWR | O_CREAT, 0600);
	if (img < 0 || ftruncate(img, size) < 0)
		return 1;
	int tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
	if (tap < 0)
		return 1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	strncpy(ifr.ifr_name, argv[2], IFNAMSIZ - 1);
	if (ioctl(tap, TUNSETIFF, &ifr) < 0)
		return 1;
	static char block[4096], frame[1400];
	memset(frame, 0, sizeof frame);
	memset(frame, 0xff, 6); /* broadcast: the kernel takes it in and drops it */
	frame[6] = 0x02;
	frame[12] = 0x88; /* a local experimental ethertype: no protocol answers */
	frame[13] = 0xb5;
	unsigned seed = 1;
	for (long i = 0; i < n; i++) {
		off_t off = (off_t)(rand_r(&seed) % (size / 4096)) * 4096;
		if (pwrite(img, block, sizeof block, off) != sizeof block)
			return 1;
		if (pread(img, block, sizeof block, off) != sizeof block)
			return 1;
		if (write(tap, frame, sizeof frame) < 0)
			return 1;
		(void)!read(tap, block, sizeof block);
	}
	return 0;
}
