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
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
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
  /** The `amqps://` listener of a node started with `{ tls: true }`. */
  readonly tls?: TlsInfo
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

/** Options of `start` / `make`. */
export interface StartOptions {
  /**
   * Also listen for `amqps://` with throwaway certificates made by the openssl CLI (a CA, a server certificate for
   * `localhost` only, a client certificate): the broker demands a client certificate signed by that CA. Ignored for
   * an `AMQP_URL` broker (its `info.tls` is then undefined).
   */
  readonly tls?: boolean
}

/** The TLS listener of a broker started with `{ tls: true }`: its URL and PEM material for clients. */
export interface TlsInfo {
  /** `amqps://guest:guest@127.0.0.1:PORT`: the certificate names `localhost` only, so pass `servername`. */
  readonly url: string
  readonly servername: string
  /** The CA that signed the server and client certificates. */
  readonly ca: string
  readonly clientCert: string
  readonly clientKey: string
}

interface Node {
  readonly info: BrokerInfo
  readonly nodename: string
  readonly env: NodeJS.ProcessEnv
  readonly ctlArgv: ReadonlyArray<string>
  readonly stop: () => Promise<void>
}

const openssl = (dir: string, args: ReadonlyArray<string>) =>
  run(["openssl", ...args], { ...process.env, HOME: dir }, 30_000).then((result) => {
    if (!result.ok) throw new Error(`openssl ${args[0]} failed: ${result.out}`)
  })

/** A CA, a server certificate for DNS:localhost and a client certificate, all throwaway, under `dir`. */
const makeCertificates = async (dir: string) => {
  const file = (name: string) => join(dir, name)
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
  await openssl(dir, ["req", "-x509", ...ec, "-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", "1", "-subj", "/CN=warren test CA"])
  for (const [name, subject, ext] of [
    ["server", "/CN=localhost", "subjectAltName=DNS:localhost"],
    ["client", "/CN=guest", "extendedKeyUsage=clientAuth"]
  ] as const) {
    await openssl(dir, ["req", ...ec, "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`), "-subj", subject])
    writeFileSync(file(`${name}.ext`), `${ext}\n`)
    await openssl(dir, [
      "x509", "-req", "-in", file(`${name}.csr`), "-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial",
      "-days", "1", "-out", file(`${name}.pem`), "-extfile", file(`${name}.ext`)
    ])
  }
  return {
    caFile: file("ca.pem"),
    certFile: file("server.pem"),
    keyFile: file("server.key"),
    ca: readFileSync(file("ca.pem"), "utf8"),
    clientCert: readFileSync(file("client.pem"), "utf8"),
    clientKey: readFileSync(file("client.key"), "utf8")
  }
}

/** Starts one private node; `cookie` (shared by a cluster's nodes) goes to the node's HOME. */
const startNode = async (options: StartOptions & { readonly cookie?: string; readonly label?: string }): Promise<Node> => {
  const server = serverBinaries.find((path) => existsSync(path))
  const ctl = ctlBinaries.find((path) => existsSync(path))
  if (server === undefined || ctl === undefined) throw new Error(HOW_TO_GET_ONE)

  const dir = mkdtempSync(join(tmpdir(), "warren-rabbitmq-"))
  const ports = new Set<number>()
  while (ports.size < (options.tls === true ? 3 : 2)) ports.add(await freePort())
  const [amqpPort, distPort, tlsPort] = Array.from(ports) as [number, number, number | undefined]
  const nodename = `warren-test-${options.label ?? ""}${process.pid}-${amqpPort}@localhost`
  writeFileSync(join(dir, "enabled_plugins"), "[].\n")
  if (options.cookie !== undefined) writeFileSync(join(dir, ".erlang.cookie"), options.cookie, { mode: 0o400 })
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
  let tls: TlsInfo | undefined
  if (tlsPort !== undefined) {
    const certs = await makeCertificates(dir)
    writeFileSync(
      join(dir, "rabbitmq.conf"),
      [
        `listeners.ssl.default = ${tlsPort}`,
        `ssl_options.cacertfile = ${certs.caFile}`,
        `ssl_options.certfile = ${certs.certFile}`,
        `ssl_options.keyfile = ${certs.keyFile}`,
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = true",
        ""
      ].join("\n")
    )
    nodeEnv["RABBITMQ_CONFIG_FILE"] = join(dir, "rabbitmq.conf")
    tls = {
      url: `amqps://guest:guest@127.0.0.1:${tlsPort}`,
      servername: "localhost",
      ca: certs.ca,
      clientCert: certs.clientCert,
      clientKey: certs.clientKey
    }
  }
  const env = { ...process.env, ...nodeEnv }
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
    if (ready.ok && (await canConnect(amqpPort)) && (tlsPort === undefined || (await canConnect(tlsPort)))) break
    await delay(500)
  }

  return {
    info: {
      url: `amqp://guest:guest@127.0.0.1:${amqpPort}`,
      ctl: ctlArgv,
      ctlEnv: nodeEnv,
      kind: "local",
      ...(tls === undefined ? {} : { tls })
    },
    nodename,
    env,
    ctlArgv,
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

/** Starts a private RabbitMQ node (or adopts `AMQP_URL`) and resolves once it accepts AMQP connections. */
export const start = async (options?: StartOptions): Promise<RunningBroker> => {
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
  const node = await startNode(options ?? {})
  return { info: node.info, stop: node.stop }
}

/** A running private cluster: one BrokerInfo per node (each with its own `rabbitmqctl`), and how to stop it. */
export interface RunningCluster {
  readonly nodes: ReadonlyArray<BrokerInfo>
  /** Every node's URL, first node first. */
  readonly urls: readonly [string, ...ReadonlyArray<string>]
  readonly stop: () => Promise<void>
}

/**
 * Starts `size` (default 2) private nodes on this machine with one Erlang cookie and joins them into one cluster
 * (`join_cluster` to the first node). Always private nodes: `AMQP_URL` is not used. A quorum queue survives the
 * loss of a node only with a majority left, so fault tests need 3 nodes.
 */
export const startCluster = async (options?: { readonly size?: number }): Promise<RunningCluster> => {
  const size = Math.max(1, options?.size ?? 2)
  const cookie = `WARRENTEST${process.pid}${Date.now()}`.toUpperCase()
  const started = await Promise.allSettled(
    Array.from({ length: size }, (_, i) => startNode({ cookie, label: `c${i}-` }))
  )
  const nodes = started.flatMap((result) => result.status === "fulfilled" ? [result.value] : [])
  const stopAll = () => Promise.all(nodes.map((node) => node.stop())).then(() => undefined)
  const failed = started.find((result) => result.status === "rejected")
  if (failed !== undefined) {
    await stopAll()
    throw failed.reason
  }
  const [first, ...rest] = nodes
  if (first === undefined) throw new Error("a cluster needs at least one node")
  for (const node of rest) {
    for (const command of [["stop_app"], ["join_cluster", first.nodename], ["start_app"], ["await_startup"]]) {
      const result = await run([...node.ctlArgv, ...command], node.env, 60_000)
      if (!result.ok) {
        await stopAll()
        throw new Error(`rabbitmqctl ${command.join(" ")} failed on ${node.nodename}: ${result.out}`)
      }
    }
  }
  return {
    nodes: nodes.map((node) => node.info),
    urls: [first.info.url, ...rest.map((node) => node.info.url)],
    stop: stopAll
  }
}

/** The broker could not be started (no `rabbitmq-server` installed and no `AMQP_URL`, or the node failed). */
export class TestBrokerError extends Data.TaggedError("TestBrokerError")<{ readonly message: string }> {}

const toError = (cause: unknown) =>
  new TestBrokerError({ message: cause instanceof Error ? cause.message : String(cause) })

/** A private cluster for the life of the Scope (see `startCluster`). */
export const makeCluster = (
  options?: { readonly size?: number }
): Effect.Effect<RunningCluster, TestBrokerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: () => startCluster(options), catch: toError }),
    (running) => Effect.promise(running.stop)
  )

/** A private broker (with options, e.g. a TLS listener) for the life of the Scope, or the `AMQP_URL` one. */
export const makeWith = (options?: StartOptions): Effect.Effect<BrokerInfo, TestBrokerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: () => start(options), catch: toError }),
    (running) => Effect.promise(running.stop)
  ).pipe(Effect.map((running) => running.info))

/** A private broker for the life of the Scope (or the `AMQP_URL` one): its connection details. */
export const make: Effect.Effect<BrokerInfo, TestBrokerError, Scope.Scope> = makeWith()
