# The pods' sandbox image (testkit/kube/images.py): Kubernetes' build/pause/linux/pause.c,
# compiled statically on the host; nothing else in the image.
FROM scratch
COPY pause /pause
ENTRYPOINT ["/pause"]
