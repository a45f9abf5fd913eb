# Stand-in for debian:bookworm-slim (testkit/kube/images.py): an mmdebstrap minbase rootfs
# from the machine's apt sources, as one layer, with the official image's PATH and CMD.
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["bash"]
