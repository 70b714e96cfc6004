/**
 * A throwaway RabbitMQ node for integration tests and benchmarks, or the broker named by `AMQP_URL`.
 *
 * Tests against a real broker need one that nobody else uses: `start()` runs Debian's `rabbitmq-server`
 * (`apt-get install rabbitmq-server`) as a private node on free ports, with its own data, log and cookie
 * dirs under a temp dir, and resolves once it accepts AMQP connections; `stop()` shuts it down and removes
 * the dirs. `make` is the same as a scoped Effect. warren's own test harness and benchmarks use it.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** How tests reach the broker and how they inject faults into it. */
export interface BrokerInfo {
  readonly url: string
  /** The command (argv prefix) that runs `rabbitmqctl` against this broker, if one is known. */
  readonly ctl: ReadonlyArray<string> | undefined
  /** Extra environment for `ctl` (the private node's HOME with its Erlang cookie, ...). */
  readonly ctlEnv: Readonly<Record<string, string>>
  readonly kind: "local" | "external"
}

/** A running broker and how to stop it. */
export interface RunningBroker {
  readonly info: BrokerInfo
  readonly stop: () => Promise<void>
}

const HOW_TO_GET_ONE = "no RabbitMQ broker for the integration tests: install one with " +
  "`apt-get install -y --no-install-recommends rabbitmq-server` (the harness then starts a private node), " +
  "or run `docker compose up -d` and set AMQP_URL=amqp://guest:guest@127.0.0.1:5672"

const serverBinaries = ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
const ctlBinaries = ["/usr/lib/rabbitmq/bin/rabbitmqctl"]

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

const run = (argv: ReadonlyArray<string>, env: NodeJS.ProcessEnv, timeoutMs: number) =>
  new Promise<{ ok: boolean; out: string }>((resolve) => {
    const [cmd, ...args] = argv
    execFile(cmd!, args, { env, timeout: timeoutMs, encoding: "utf8" }, (error, stdout, stderr) =>
      resolve({ ok: error === null, out: `${stdout}${stderr}` }))
  })

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts a private RabbitMQ node (or adopts `AMQP_URL`) and resolves once it accepts AMQP connections. */
export const start = async (): Promise<RunningBroker> => {
  const external = process.env["AMQP_URL"]
  if (external !== undefined && external !== "") {
    const ctl = process.env["WARREN_RABBITMQCTL"]
    return {
      info: {
        url: external,
        ctl: ctl === undefined || ctl === "" ? undefined : ctl.split(/\s+/),
        ctlEnv: {},
        kind: "external"
      },
      stop: async () => {}
    }
  }
  const server = serverBinaries.find((path) => existsSync(path))
  const ctl = ctlBinaries.find((path) => existsSync(path))
  if (server === undefined || ctl === undefined) throw new Error(HOW_TO_GET_ONE)

  const dir = mkdtempSync(join(tmpdir(), "warren-rabbitmq-"))
  const amqpPort = await freePort()
  let distPort = await freePort()
  while (distPort === amqpPort) distPort = await freePort()
  const nodename = `warren-test-${process.pid}-${amqpPort}@localhost`
  writeFileSync(join(dir, "enabled_plugins"), "[].\n")
  const nodeEnv: Record<string, string> = {
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
    RABBITMQ_PID_FILE: join(dir, "pid"),
    HOME: dir
  }
  const env = { ...process.env, ...nodeEnv }
  const logFile = join(dir, "server.out")
  writeFileSync(logFile, "")
  const child: ChildProcess = spawn(server, [], {
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output: Array<string> = []
  child.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")))
  child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")))
  let exited = false
  child.once("exit", () => {
    exited = true
  })
  const killGroup = () => {
    if (!exited && child.pid !== undefined) {
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
  }
  process.once("exit", killGroup)
  const ctlArgv = [ctl, "-n", nodename, "-q"]
  const cleanup = () => {
    killGroup()
    process.removeListener("exit", killGroup)
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + 90_000
  for (;;) {
    if (exited) {
      const log = output.join("").split("\n").slice(-15).join("\n")
      cleanup()
      throw new Error(`the private RabbitMQ node exited during startup:\n${log}`)
    }
    if (Date.now() > deadline) {
      cleanup()
      throw new Error(`the private RabbitMQ node did not start within 90 s (${HOW_TO_GET_ONE})`)
    }
    const ready = await run([...ctlArgv, "await_startup"], env, 15_000)
    if (ready.ok && (await canConnect(amqpPort))) break
    await delay(500)
  }

  return {
    info: {
      url: `amqp://guest:guest@127.0.0.1:${amqpPort}`,
      ctl: ctlArgv,
      ctlEnv: nodeEnv,
      kind: "local"
    },
    stop: async () => {
      if (!exited) {
        await run([...ctlArgv, "stop"], env, 30_000)
        const until = Date.now() + 10_000
        while (!exited && Date.now() < until) await delay(100)
      }
      cleanup()
    }
  }
}

/** The broker could not be started (no `rabbitmq-server` installed and no `AMQP_URL`, or the node failed). */
export class TestBrokerError extends Data.TaggedError("TestBrokerError")<{ readonly message: string }> {}

/** A private broker for the life of the Scope (or the `AMQP_URL` one): its connection details. */
export const make: Effect.Effect<BrokerInfo, TestBrokerError, Scope.Scope> = Effect.acquireRelease(
  Effect.tryPromise({
    try: start,
    catch: (cause) => new TestBrokerError({ message: cause instanceof Error ? cause.message : String(cause) })
  }),
  (running) => Effect.promise(running.stop)
).pipe(Effect.map((running) => running.info))
