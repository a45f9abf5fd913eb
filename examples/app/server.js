'use strict';
// The fast-note example app: an HTTP server that reports which migrations its image carries
// and which of them the database has applied. Every GET path answers (so whatever paths the
// chart's probes use) with JSON:
//   {image, pod, image_migrations, applied_migrations, missing_migrations, error?}
// 200 when the database is readable, 503 otherwise; with FAST_NOTE_REQUIRE_SCHEMA=1 also 503
// while any of the image's migrations is not applied (README.md).

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { Client } = require('pg');

const PORT = Number(process.env.PORT || 3000);
const IMAGE = process.env.FAST_NOTE_IMAGE || '';
const POD = process.env.HOSTNAME || os.hostname();
const MIGRATIONS_DIR = process.env.MIGRATIONS_DIR || '/app/prisma/migrations';
const REQUIRE_SCHEMA = process.env.FAST_NOTE_REQUIRE_SCHEMA === '1';
const TIMEOUT_MS = 3000;
// Prisma's own URL parameters, unknown to PostgreSQL; `schema` names the history's schema.
const PRISMA_PARAMS = [
  'schema', 'connection_limit', 'pool_timeout', 'socket_timeout', 'statement_cache_size',
  'pgbouncer', 'sslaccept', 'sslidentity', 'sslpassword',
];

function imageMigrations() {
  let entries;
  try {
    entries = fs.readdirSync(MIGRATIONS_DIR, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(MIGRATIONS_DIR, e.name, 'migration.sql')))
    .map((e) => e.name)
    .sort();
}

// {connectionString, schema} from a Prisma-style URL, or {error}; never echoes the URL.
function database(url) {
  if (!url) return { error: 'DATABASE_URL is not set' };
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return { error: 'DATABASE_URL is not a valid URL' };
  }
  const schema = parsed.searchParams.get('schema') || 'public';
  for (const name of PRISMA_PARAMS) parsed.searchParams.delete(name);
  const display = new URL(parsed);
  if (display.password) display.password = '***';
  return { connectionString: parsed.toString(), schema, display: display.toString() };
}

const quoteIdent = (name) => `"${name.replace(/"/g, '""')}"`;

async function appliedMigrations(db) {
  const client = new Client({
    connectionString: db.connectionString,
    connectionTimeoutMillis: TIMEOUT_MS,
    query_timeout: TIMEOUT_MS,
    application_name: 'fast-note-example',
  });
  client.on('error', () => {}); // a connection lost after the query: nothing to do
  try {
    await client.connect();
    const { rows } = await client.query(
      `SELECT migration_name FROM ${quoteIdent(db.schema)}._prisma_migrations ` +
        'WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY 1',
    );
    return rows.map((row) => row.migration_name);
  } finally {
    await client.end().catch(() => {});
  }
}

const MIGRATIONS = imageMigrations();
const DATABASE = database(process.env.DATABASE_URL);

async function check() {
  const body = {
    image: IMAGE,
    pod: POD,
    image_migrations: MIGRATIONS,
    applied_migrations: null, // null: the database could not be read
    missing_migrations: null,
  };
  if (DATABASE.error) return { status: 503, body: { ...body, error: DATABASE.error } };
  try {
    body.applied_migrations = await appliedMigrations(DATABASE);
  } catch (err) {
    return { status: 503, body: { ...body, error: String(err.message || err).split('\n')[0] } };
  }
  const applied = new Set(body.applied_migrations);
  body.missing_migrations = MIGRATIONS.filter((name) => !applied.has(name));
  if (REQUIRE_SCHEMA && body.missing_migrations.length > 0) {
    const error = `${body.missing_migrations.length} migration(s) of this image are not applied`;
    return { status: 503, body: { ...body, error } };
  }
  return { status: 200, body };
}

// Concurrent requests share one check: probes never open more than one connection at a time.
let running = null;
function sharedCheck() {
  running ??= check().finally(() => {
    running = null;
  });
  return running;
}

let lastState = '';
function logChange({ status, body }) {
  const state = status === 200 ? 'ready' : `not ready: ${body.error}`;
  if (state !== lastState) console.log(`database: ${state}`);
  lastState = state;
}

const server = http.createServer(async (req, res) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    return;
  }
  const result = await sharedCheck();
  logChange(result);
  const data = JSON.stringify(result.body);
  res.writeHead(result.status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
  });
  res.end(data);
});

function stop(signal) {
  console.log(`${signal}: stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 500).unref(); // a database check still waiting
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server.listen(PORT, '0.0.0.0', () => {
  const db = DATABASE.error || DATABASE.display;
  console.log(
    `fast-note example app (${IMAGE || 'no image name'}) on 0.0.0.0:${PORT}, ` +
      `${MIGRATIONS.length} migrations in the image, database: ${db}` +
      (REQUIRE_SCHEMA ? ', ready only when all are applied' : ''),
  );
});
