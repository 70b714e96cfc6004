import { assert, describe, inject, it } from "@effect/vitest"
import amqp from "amqplib"
import type * as Amqp from "amqplib"
import { Effect, Either } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import * as NodeUrl from "node:url"
import { parseRpcCallArgs, rpcCall, type RpcCallOptions, rpcCallMain } from "../src/commands/rpcCall.js"

// The broker of this project's run, provided by the amqp package's global setup (see vitest.config.ts).
declare module "vitest" {
  export interface ProvidedContext {
    broker: { readonly url: string }
  }
}

const brokerUrl = () => inject("broker").url

let counter = 0
const unique = (label: string) => `warren-cli-${label}-${process.pid}-${++counter}`

/**
 * A plain amqplib RPC server (not warren): consumes its own queue, optionally bound to an exchange it declares
 * itself (durable, not auto-delete: arguments the CLI would never use), answers `re:<body>` unless `silent`.
 */
const startServer = (options: {
  readonly exchange?: { readonly name: string; readonly type: string; readonly routingKey: string }
  readonly silent?: boolean
}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const connection = await amqp.connect(brokerUrl(), { noDelay: true })
      connection.on("error", () => {})
      const channel = await connection.createChannel()
      channel.on("error", () => {})
      const { queue } = await channel.assertQueue(unique("queue"), { exclusive: true, autoDelete: true })
      if (options.exchange !== undefined) {
        await channel.assertExchange(options.exchange.name, options.exchange.type, { durable: true, autoDelete: false })
        await channel.bindQueue(queue, options.exchange.name, options.exchange.routingKey)
      }
      const received: Array<Amqp.ConsumeMessage> = []
      await channel.consume(queue, (message) => {
        if (message === null) return
        received.push(message)
        if (options.silent !== true) {
          channel.publish("", message.properties.replyTo, Buffer.from(`re:${message.content.toString()}`), {
            correlationId: message.properties.correlationId
          })
        }
      }, { noAck: true })
      return { connection, channel, queue, received }
    }),
    ({ channel, connection }) =>
      Effect.promise(async () => {
        if (options.exchange !== undefined) await channel.deleteExchange(options.exchange.name).catch(() => undefined)
        await connection.close().catch(() => undefined)
      })
  )

/** A local port with nothing listening. */
const closedPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 1
      server.close(() => resolve(port))
    })
  })
)

const options = (overrides: Partial<RpcCallOptions>): RpcCallOptions => ({
  url: brokerUrl(),
  exchange: "",
  exchangeType: "direct",
  routingKey: "",
  timeout: 5000,
  payload: "hello",
  ...overrides
})

describe("warren rpc call: arguments", () => {
  it("parses its options", () => {
    const base = ["--url", "amqp://localhost", "--routing-key", "rk"]
    assert.deepStrictEqual(
      parseRpcCallArgs([...base, "--exchange", "ex", "--exchange-type", "topic", "--timeout", "250", "body"]),
      Either.right({
        url: "amqp://localhost",
        exchange: "ex",
        exchangeType: "topic",
        routingKey: "rk",
        timeout: 250,
        payload: "body"
      })
    )
    assert.deepStrictEqual(
      parseRpcCallArgs([...base, "body"]),
      Either.right({ url: "amqp://localhost", exchange: "", exchangeType: "direct", routingKey: "rk", timeout: 5000, payload: "body" })
    )
    for (const empty of ["", "\"\"", "''"]) {
      const parsed = parseRpcCallArgs([...base, "--exchange", empty, "body"])
      assert.isTrue(Either.isRight(parsed) && parsed.right.exchange === "", empty)
    }
    assert.deepStrictEqual(parseRpcCallArgs(["--help"]), Either.left("help"))
    for (
      const bad of [
        ["--routing-key", "rk", "body"],
        ["--url", "http://x", "--routing-key", "rk", "body"],
        ["--url", "amqp://x", "body"],
        [...base],
        [...base, "one", "two"],
        [...base, "--timeout", "soon", "body"],
        [...base, "--timeout", "0", "body"],
        [...base, "--nope", "body"]
      ]
    ) {
      assert.isTrue(Either.isLeft(parseRpcCallArgs(bad)), bad.join(" "))
    }
  })
})

describe("warren rpc call: the program against a real broker and a plain amqplib server", () => {
  it.scopedLive("calls an exchange another program declared (durable, not auto-delete) and returns the reply", () =>
    Effect.gen(function*() {
      const exchange = unique("ex")
      const server = yield* startServer({ exchange: { name: exchange, type: "topic", routingKey: "jobs.#" } })
      const reply = yield* rpcCall(options({ exchange, exchangeType: "direct", routingKey: "jobs.one", payload: "work" }))
      assert.strictEqual(reply.toString(), "re:work")
      const request = server.received[0]
      assert.isDefined(request)
      assert.match(String(request?.properties.replyTo), /^amq\.gen-/)
      assert.isString(request?.properties.correlationId)
    }))

  it.scopedLive("the default exchange: the routing key is the server's queue", () =>
    Effect.gen(function*() {
      const server = yield* startServer({})
      const reply = yield* rpcCall(options({ routingKey: server.queue, payload: "plain" }))
      assert.strictEqual(reply.toString(), "re:plain")
    }))

  it.scopedLive("no reply in time: a Timeout error", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ silent: true })
      const error = yield* Effect.flip(rpcCall(options({ routingKey: server.queue, timeout: 300 })))
      assert.strictEqual(error.reason, "Timeout")
      assert.match(error.message, /no reply within 300 ms/)
      assert.strictEqual(server.received.length, 1)
    }))

  it.scopedLive("nothing bound for the routing key: an Unroutable error at once", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(rpcCall(options({ routingKey: unique("nobody"), timeout: 20_000 })))
      assert.strictEqual(error.reason, "Unroutable")
    }))

  it.scopedLive("a missing exchange: an Exchange error, nothing declared", () =>
    Effect.gen(function*() {
      const exchange = unique("missing")
      const error = yield* Effect.flip(rpcCall(options({ exchange, routingKey: "x", timeout: 20_000 })))
      assert.strictEqual(error.reason, "Exchange")
      assert.match(error.message, /does not exist/)
    }))

  it.scopedLive("no broker at the URL: a Connect error", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const error = yield* Effect.flip(
        rpcCall(options({ url: `amqp://guest:secret@127.0.0.1:${port}`, routingKey: "x", timeout: 20_000 }))
      )
      assert.strictEqual(error.reason, "Connect")
      assert.match(error.message, /^AMQP connect to amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+ failed \(Refused\)/)
      assert.notInclude(error.message, "secret")
    }))

  it.scopedLive("a port that accepts TCP but never speaks AMQP: a Connect error naming the stalled handshake", () =>
    Effect.gen(function*() {
      const server = Net.createServer(() => undefined)
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.sync(() => server.close())
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const error = yield* Effect.flip(rpcCall(options({ url: `amqp://127.0.0.1:${port}`, routingKey: "x", timeout: 2000 })))
      assert.strictEqual(error.reason, "Connect")
      assert.match(error.message, /\(HandshakeTimeout\)/)
    }))

  it.scopedLive("rpcCallMain: the body on stdout and exit 0; one line on stderr and exit 1 or 2", () =>
    Effect.gen(function*() {
      const server = yield* startServer({})
      const out: Array<Buffer> = []
      const err: Array<string> = []
      const io = { stdout: (bytes: Buffer) => out.push(bytes), stderr: (line: string) => err.push(line) }
      const ok = yield* rpcCallMain(["--url", brokerUrl(), "--routing-key", server.queue, "ping"], io)
      assert.strictEqual(ok, 0)
      assert.strictEqual(Buffer.concat(out).toString(), "re:ping")
      assert.deepStrictEqual(err, [])
      const failed = yield* rpcCallMain(
        ["--url", brokerUrl(), "--exchange", unique("missing"), "--routing-key", "x", "ping"],
        io
      )
      assert.strictEqual(failed, 1)
      assert.strictEqual(err.length, 1)
      assert.match(err[0]!, /^warren rpc call: exchange "[^"]+" does not exist\n$/)
      const usage = yield* rpcCallMain(["--url", brokerUrl()], io)
      assert.strictEqual(usage, 2)
    }))
})

/** Runs `warren rpc call ARGS` from the sources (vite-node with this project's config: no build needed). */
const runCommand = (args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resume) => {
    const root = NodeUrl.fileURLToPath(new URL("../../../", import.meta.url))
    const child = ChildProcess.spawn(
      process.execPath,
      [
        "node_modules/vite-node/vite-node.mjs",
        "--config",
        "packages/cli/vitest.config.ts",
        "packages/cli/src/main.ts",
        "rpc",
        "call",
        ...args
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
    )
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.once("exit", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("warren rpc call: the command as a process", () => {
  it.scopedLive("prints the response and exits 0; a timeout is one stderr line and exit 1", () =>
    Effect.gen(function*() {
      const server = yield* startServer({})
      const ok = yield* runCommand(["--url", brokerUrl(), "--routing-key", server.queue, "--timeout", "10000", "from a process"])
      assert.strictEqual(ok.code, 0, ok.stderr)
      assert.strictEqual(ok.stdout, "re:from a process")
      const silent = yield* startServer({ silent: true })
      const late = yield* runCommand(["--url", brokerUrl(), "--exchange", "", "--routing-key", silent.queue, "--timeout", "500", "x"])
      assert.strictEqual(late.code, 1)
      assert.strictEqual(late.stdout, "")
      assert.match(late.stderr, /^warren rpc call: no reply within 500 ms[^\n]*\n$/)
    }), 60_000)
})
