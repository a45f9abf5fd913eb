# The migrator image with this app's migrations inside, for the chart's bundled mode
# (`migration.source.image: migrator`): the app image then needs no `cp` and no copy container
# runs. Build it with every app release and give it the app's tag:
#   docker build -f examples/app/migrator.Dockerfile \
#     --build-arg MIGRATOR=fast-note-migrate:<version> -t fast-note-migrations:<app tag> examples/app
# and deploy with migration.image.repository=fast-note-migrations, migration.image.tag=<app tag>.
ARG MIGRATOR=fast-note-migrate
FROM ${MIGRATOR}
COPY prisma/migrations /app/prisma/migrations
