// A private RabbitMQ node for a benchmark run, or the broker named by AMQP_URL.
// Same recipe as the test harness (packages/amqp/test/support/broker.ts), in plain JS so the bench needs no build.
import { execFile, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

const SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
const CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

const run = (argv, env, timeout) =>
  new Promise((resolve) => {
    const [cmd, ...args] = argv
    execFile(cmd, args, { env, timeout, encoding: "utf8" }, (error, stdout, stderr) =>
      resolve({ ok: error === null, out: `${stdout}${stderr}` }))
  })

const canConnect = (port) =>
  new Promise((resolve) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts a private node (or adopts AMQP_URL); resolves with `{ url, kind, pid, stop }` once it accepts AMQP. */
export const startBroker = async () => {
  const external = process.env.AMQP_URL
  if (external) return { url: external, kind: "external", pid: undefined, stop: async () => {} }
  if (!existsSync(SERVER) || !existsSync(CTL)) {
    throw new Error("no RabbitMQ broker: `apt-get install -y --no-install-recommends rabbitmq-server`, or set AMQP_URL")
  }
  const dir = mkdtempSync(join(tmpdir(), "warren-bench-rabbitmq-"))
  const amqpPort = await freePort()
  let distPort = await freePort()
  while (distPort === amqpPort) distPort = await freePort()
  const nodename = `warren-bench-${process.pid}-${amqpPort}@localhost`
  writeFileSync(join(dir, "enabled_plugins"), "[].\n")
  const env = {
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
  const child = spawn(SERVER, [], { env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
  const output = []
  child.stdout.on("data", (c) => output.push(String(c)))
  child.stderr.on("data", (c) => output.push(String(c)))
  let exited = false
  child.once("exit", () => (exited = true))
  const killGroup = () => {
    if (!exited) {
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {
        // gone
      }
    }
  }
  process.once("exit", killGroup)
  const ctl = [CTL, "-n", nodename, "-q"]
  const cleanup = () => {
    killGroup()
    process.removeListener("exit", killGroup)
    rmSync(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + 90_000
  for (;;) {
    if (exited) {
      cleanup()
      throw new Error(`RabbitMQ exited during startup:\n${output.join("").split("\n").slice(-15).join("\n")}`)
    }
    if (Date.now() > deadline) {
      cleanup()
      throw new Error("RabbitMQ did not start within 90 s")
    }
    const ready = await run([...ctl, "await_startup"], env, 15_000)
    if (ready.ok && (await canConnect(amqpPort))) break
    await delay(500)
  }
  return {
    url: `amqp://guest:guest@127.0.0.1:${amqpPort}`,
    kind: "local",
    pid: child.pid,
    stop: async () => {
      if (!exited) {
        await run([...ctl, "stop"], env, 30_000)
        const until = Date.now() + 10_000
        while (!exited && Date.now() < until) await delay(100)
      }
      cleanup()
    }
  }
}
