// Starts a real platform for the browser tests: `aiplatform up` against the PostgreSQL and
// Redis that the Python tests use, in a fresh database, Redis namespace and data directory, with
// an admin to log in as. Returns the teardown that stops it and removes all three.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ADMIN = { username: "e2e-admin", password: "a long e2e password 42" };

const READY_WITHIN_MS = 180_000;
const STOP_WITHIN_MS = 20_000;
const repo = resolve(import.meta.dirname, "..", "..");
const python = process.env.AIPLATFORM_PYTHON ?? join(repo, ".venv", "bin", "python");
const postgres = process.env.AIPLATFORM_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/postgres";
const redis = process.env.AIPLATFORM_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/0";

function psql(sql: string): void {
  execFileSync("psql", [postgres, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], { stdio: "inherit" });
}

async function waitForReady(url: string, child: { exitCode: number | null }): Promise<void> {
  const deadline = Date.now() + READY_WITHIN_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`aiplatform up exited (${child.exitCode}) before it was ready`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((done) => setTimeout(done, 500));
  }
  throw new Error(`the platform was not ready at ${url} within ${READY_WITHIN_MS / 1000} s`);
}

export default async function startPlatform(): Promise<() => Promise<void>> {
  const name = `e2e_${randomBytes(5).toString("hex")}`;
  const dataDir = mkdtempSync(join(tmpdir(), "aiplatform-e2e-"));
  const port = process.env.E2E_PORT as string;
  psql(`CREATE DATABASE ${name}`);
  const env = {
    ...process.env,
    AIPLATFORM_DATABASE_URL: postgres.replace(/\/[^/]*$/, `/${name}`),
    AIPLATFORM_REDIS_URL: redis,
    AIPLATFORM_INSTANCE: name,
    AIPLATFORM_DATA_DIR: dataDir,
    AIPLATFORM_SECRET_KEY: randomBytes(32).toString("hex"),
  };
  const cli = (...args: string[]) => execFileSync(python, ["-m", "aiplatform", ...args], { env, stdio: "inherit" });
  let up: ChildProcess | null = null;
  let stopped: Promise<void> = Promise.resolve();

  async function teardown(): Promise<void> {
    if (up && up.exitCode === null) {
      up.kill("SIGINT");
      const child = up;
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_WITHIN_MS);
      await stopped;
      clearTimeout(timer);
    }
    psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    rmSync(dataDir, { recursive: true, force: true });
    const keys = execFileSync("redis-cli", ["-u", redis, "--scan", "--pattern", `*${name}*`], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean);
    for (let i = 0; i < keys.length; i += 500) execFileSync("redis-cli", ["-u", redis, "del", ...keys.slice(i, i + 500)]);
  }

  try {
    cli("migrate");
    cli("create-admin", "--username", ADMIN.username, "--password", ADMIN.password, "--email", "e2e@example.com");
    const child = (up = spawn(python, ["-m", "aiplatform", "up", "--port", port, "--data-dir", dataDir], { env, stdio: "inherit" }));
    stopped = new Promise<void>((done) => child.once("exit", () => done()));
    await waitForReady(`http://127.0.0.1:${port}/ready`, child);
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
