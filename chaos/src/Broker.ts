/**
 * A private RabbitMQ node that the fault suite can crash (`kill -9` of its whole process group) and start again on
 * the same ports and data directory, so durable queues and persistent messages come back as after a real crash.
 *
 * warren's `TestBroker` starts and stops a node but cannot restart one; this starter uses the same recipe
 * (docs in /work/shared/reference/rabbitmq-notes.md): Debian's `rabbitmq-server` with its own ports, mnesia, log
 * and cookie dirs. Loopback only.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

const SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
const CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

/** A running (or crashed) private node. */
export interface ChaosBroker {
  readonly url: string
  readonly amqpPort: number
  /** Runs `rabbitmqctl -n NODE -q ARGS`; rejects with its output when it fails. */
  readonly ctl: (...args: ReadonlyArray<string>) => Promise<string>
  /** `kill -9` of the node's process group (beam and its helpers); resolves once it is gone. */
  readonly kill: () => Promise<void>
  /** Starts the node again (same ports, same data); resolves once it accepts AMQP connections. */
  readonly restart: () => Promise<void>
  /** Stops the node and removes its directory. */
  readonly stop: () => Promise<void>
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

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Whether this machine can run a private node (rabbitmq-server installed). */
export const available = (): boolean => existsSync(SERVER) && existsSync(CTL)

/** Starts a private node on free loopback ports. */
export const startBroker = async (): Promise<ChaosBroker> => {
  if (!available()) {
    throw new Error("the fault suite needs rabbitmq-server: apt-get install -y --no-install-recommends rabbitmq-server")
  }
  const dir = mkdtempSync(join(tmpdir(), "warren-chaos-rabbitmq-"))
  const amqpPort = await freePort()
  let distPort = await freePort()
  while (distPort === amqpPort) distPort = await freePort()
  const nodename = `warren-chaos-${process.pid}-${amqpPort}@localhost`
  writeFileSync(join(dir, "enabled_plugins"), "[].\n")
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RABBITMQ_NODENAME: nodename,
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
    RABBITMQ_PID_FILE: join(dir, "pid"),
    HOME: dir
  }
  let child: ChildProcess | undefined
  let exited = true
  let output: Array<string> = []

  const killGroup = () => {
    if (!exited && child?.pid !== undefined) {
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
  }
  process.once("exit", killGroup)

  const ctl = (...args: ReadonlyArray<string>) =>
    new Promise<string>((resolve, reject) => {
      execFile(
        CTL,
        ["-n", nodename, "-q", ...args],
        { cwd: dir, env, timeout: 30_000, encoding: "utf8" },
        (error, stdout, stderr) =>
          error === null
            ? resolve(stdout)
            : reject(new Error(`rabbitmqctl ${args.join(" ")}: ${stdout}${stderr}`.trim()))
      )
    })

  const launch = async () => {
    output = []
    // In its own directory: an Erlang crash dump (erl_crash.dump) lands there, not in the caller's.
    const spawned = spawn(SERVER, [], { cwd: dir, env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    child = spawned
    exited = false
    spawned.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")))
    spawned.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString("utf8")))
    spawned.once("exit", () => {
      if (child === spawned) exited = true
    })
    const deadline = Date.now() + 120_000
    for (;;) {
      if (exited) throw new Error(`the chaos RabbitMQ node exited during startup:\n${output.join("").slice(-2000)}`)
      if (Date.now() > deadline) throw new Error("the chaos RabbitMQ node did not start within 120 s")
      const ready = await ctl("await_startup").then(() => true, () => false)
      if (ready && (await canConnect(amqpPort))) return
      await delay(300)
    }
  }

  const kill = async () => {
    const current = child
    if (current === undefined || exited) return
    const gone = new Promise<void>((resolve) => current.once("exit", () => resolve()))
    killGroup()
    await gone
    // The listener must be gone too before a restart can bind the same port.
    while (await canConnect(amqpPort)) await delay(100)
  }

  await launch()
  return {
    url: `amqp://guest:guest@127.0.0.1:${amqpPort}`,
    amqpPort,
    ctl,
    kill,
    restart: launch,
    stop: async () => {
      if (!exited) {
        await ctl("stop").catch(() => undefined)
        const until = Date.now() + 10_000
        while (!exited && Date.now() < until) await delay(100)
      }
      killGroup()
      process.removeListener("exit", killGroup)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/**
 * Closes, from the broker side, every client connection whose `connection_name` is one of `names` (the client sees
 * 320 CONNECTION_FORCED). Returns how many were closed.
 */
export const closeConnections = async (broker: ChaosBroker, names: ReadonlyArray<string>): Promise<number> => {
  // The JSON listing has the client properties; its pids are in Elixir syntax, which close_connection does not
  // take: the pids come from the plain listing, matched by the connection's unique peer name.
  const json = await broker.ctl("list_connections", "name", "client_properties", "--formatter", "json")
  const rows = (json.trim() === "" ? [] : JSON.parse(json)) as ReadonlyArray<{
    readonly name: string
    readonly client_properties: ReadonlyArray<readonly [string, string, unknown]>
  }>
  const peers = new Set(
    rows.filter((row) =>
      row.client_properties.some(([key, , value]) => key === "connection_name" && names.includes(String(value)))
    )
      .map((row) => row.name)
  )
  const plain = await broker.ctl("list_connections", "name", "pid")
  const pids = plain.split("\n").flatMap((line) => {
    const [peer, pid] = line.split("\t")
    return peer !== undefined && pid !== undefined && peers.has(peer) ? [pid.trim()] : []
  })
  for (const pid of pids) await broker.ctl("close_connection", pid, "closed by warren chaos").catch(() => undefined)
  return pids.length
}
