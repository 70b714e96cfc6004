/**
 * A throwaway PostgreSQL cluster for integration tests and benchmarks, or the server named by `DATABASE_URL`.
 *
 * `start()` runs Debian's `postgresql` binaries (`apt-get install postgresql`): `initdb` into a temp dir and
 * `postgres` on a free loopback port, tuned for tests (no fsync, small buffers), as the `postgres` user when
 * run as root (the server refuses root). It resolves once the server accepts connections; `stop()` shuts it
 * down and removes the dir. `make` is the same as a scoped Effect.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Redacted from "effect/Redacted"

/**
 * How tests reach the server.
 *
 * @since 0.1.0
 * @category models
 */
export interface PostgresInfo {
  /** A superuser connection URL to the `postgres` database. */
  readonly url: string
  readonly kind: "local" | "external"
}

/**
 * A running server and how to stop it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunningPostgres {
  readonly info: PostgresInfo
  readonly stop: () => Promise<void>
}

const HOW_TO_GET_ONE = "no PostgreSQL for the integration tests: install one with " +
  "`apt-get install -y --no-install-recommends postgresql` (the harness then starts a private cluster), " +
  "or run `docker compose up -d postgres` and set DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres"

/** The directory holding `initdb` and `postgres`: `pg_config --bindir`, else the newest Debian install. */
const binDir = (): string | undefined => {
  const candidates: Array<string> = []
  try {
    candidates.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim())
  } catch {
    // no pg_config on the PATH
  }
  try {
    const versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a))
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`)
  } catch {
    // no Debian install
  }
  return candidates.find((dir) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres")))
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Runs one statement on a short-lived connection to `url`. */
const statement = (url: string, sql: string) =>
  Effect.flatMap(
    PgClient.make({ url: Redacted.make(url), maxConnections: 1, connectTimeout: Duration.seconds(2) }),
    (client) => client.unsafe(sql)
  ).pipe(Effect.scoped, Effect.provide(Reactivity.layer))

const canQuery = (url: string): Promise<boolean> =>
  Effect.runPromise(statement(url, "SELECT 1").pipe(Effect.as(true), Effect.orElseSucceed(() => false)))

/**
 * Options of the private cluster.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartOptions {
  /**
   * Keep PostgreSQL's default durability (fsync, synchronous commit, full-page writes), for benchmarks. Off by
   * default: tests need no crash safety from a throwaway cluster, and start and run faster without it.
   */
  readonly durable?: boolean | undefined
}

/**
 * Starts a private PostgreSQL cluster (or adopts `DATABASE_URL`) and resolves once it accepts connections.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = async (options: StartOptions = {}): Promise<RunningPostgres> => {
  const external = process.env["DATABASE_URL"]
  if (external !== undefined && external !== "") {
    return {
      info: { url: external, kind: "external" },
      stop: async () => {}
    }
  }
  const bin = binDir()
  if (bin === undefined) throw new Error(HOW_TO_GET_ONE)
  const asRoot = process.getuid?.() === 0
  // initdb and postgres refuse to run as root: run them as the user Debian's package creates.
  const argv = (cmd: string, args: ReadonlyArray<string>): [string, Array<string>] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, cmd), ...args]] : [join(bin, cmd), [...args]]

  const dir = mkdtempSync(join(tmpdir(), "warren-postgres-"))
  const data = join(dir, "data")
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
    chownSync(dir, uid, gid)
  }
  try {
    const [cmd, args] = argv("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    execFileSync(cmd, args, { stdio: "pipe", env: { ...process.env, LC_ALL: "C" } })
  } catch (cause) {
    rmSync(dir, { recursive: true, force: true })
    const detail = cause instanceof Error ? cause.message : String(cause)
    throw new Error(`initdb failed for the private PostgreSQL cluster: ${detail}`)
  }
  const port = await freePort()
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  const serverArgs = [
    "-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
    "-c", "max_connections=200", "-c", "log_min_messages=warning",
    ...(options.durable === true
      ? ["-c", "shared_buffers=128MB"]
      : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "shared_buffers=32MB"])
  ]

  let child: ChildProcess | undefined
  let exited = true
  const output: Array<string> = []
  const killGroup = (signal: NodeJS.Signals) => {
    if (!exited && child?.pid !== undefined) {
      try {
        process.kill(-child.pid, signal)
      } catch {
        // already gone
      }
    }
  }
  const onExit = () => killGroup("SIGKILL")
  process.once("exit", onExit)

  const launch = async (): Promise<void> => {
    const [cmd, args] = argv("postgres", serverArgs)
    const proc = spawn(cmd, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] })
    child = proc
    exited = false
    proc.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")))
    proc.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")))
    proc.once("exit", () => {
      if (child === proc) exited = true
    })
    const deadline = Date.now() + 60_000
    for (;;) {
      if (exited) {
        throw new Error(`the private PostgreSQL exited during startup:\n${output.join("").slice(-2000)}`)
      }
      if (Date.now() > deadline) throw new Error(`the private PostgreSQL did not start within 60 s`)
      if (await canQuery(url)) return
      await delay(100)
    }
  }
  /** Fast shutdown (SIGINT to the postmaster), then the whole process group if it lingers. */
  const halt = async (): Promise<void> => {
    killGroup("SIGINT")
    const until = Date.now() + 10_000
    while (!exited && Date.now() < until) await delay(50)
    killGroup("SIGKILL")
    while (!exited) await delay(20)
  }
  const cleanup = () => {
    process.removeListener("exit", onExit)
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    await launch()
  } catch (cause) {
    await halt()
    cleanup()
    throw cause
  }
  return {
    info: { url, kind: "local" },
    stop: async () => {
      await halt()
      cleanup()
    }
  }
}

/**
 * The cluster could not be started (no `postgresql` installed and no `DATABASE_URL`, or the server failed).
 *
 * @since 0.1.0
 * @category errors
 */
export class TestPostgresError extends Data.TaggedError("TestPostgresError")<{ readonly message: string }> {}

/**
 * A private cluster for the life of the Scope (or the `DATABASE_URL` one).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: StartOptions): Effect.Effect<RunningPostgres, TestPostgresError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => start(options),
      catch: (cause) => new TestPostgresError({ message: cause instanceof Error ? cause.message : String(cause) })
    }),
    (running) => Effect.promise(running.stop)
  )

/**
 * A fresh, empty database on the server at `url` for the life of the Scope (dropped at the end), so tests
 * sharing one server never see each other's data. Resolves with its URL.
 *
 * @since 0.1.0
 * @category constructors
 */
export const freshDatabase = (url: string): Effect.Effect<string, TestPostgresError, Scope.Scope> => {
  const name = `warren_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`
  const admin = (sql: string) =>
    statement(url, sql).pipe(Effect.mapError((e) => new TestPostgresError({ message: `${sql}: ${e.message}` })))
  return Effect.acquireRelease(
    Effect.as(admin(`CREATE DATABASE ${name}`), withDatabase(url, name)),
    () => Effect.ignore(admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  )
}

const withDatabase = (url: string, name: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${name}`
  return parsed.toString()
}
