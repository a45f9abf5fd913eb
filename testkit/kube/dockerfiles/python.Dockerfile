# Stand-in for python:3.11-slim-bookworm (testkit/kube/images.py): Debian's Python 3.11 and
# pip on the debian:bookworm-slim stand-in, `python` and `pip` on PATH, and pip allowed to
# install into the system (the official image's Python is not Debian's, so it has no
# EXTERNALLY-MANAGED marker either).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip ca-certificates \
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip
ENV LANG=C.UTF-8
CMD ["python3"]
