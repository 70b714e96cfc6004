import { assert, describe, inject, it } from "@effect/vitest"
import amqp from "amqplib"
import type * as Amqp from "amqplib"
import { Duration, Effect, HashMap, Option } from "effect"
import * as Net from "node:net"
import { type RpcCallArgs, rpcCallProgram } from "../src/commands/rpcCall.js"
import type { Io } from "../src/internal/io.js"
import { runWarren } from "./support/warren.js"

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
  readonly raw?: boolean
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
          const body = options.raw === true ? message.content : Buffer.from(`re:${message.content.toString()}`)
          channel.publish("", message.properties.replyTo, body, {
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

const args = (overrides: Partial<RpcCallArgs>): RpcCallArgs => ({
  logFormat: "text",
  verbose: false,
  url: brokerUrl(),
  exchange: "",
  exchangeType: Option.none(),
  routingKey: "",
  timeout: Duration.seconds(5),
  header: Option.none(),
  contentType: Option.none(),
  json: false,
  count: 1,
  concurrency: 1,
  payload: "hello",
  ...overrides
})

/** Runs the program in-process; stdout collected. */
const call = (overrides: Partial<RpcCallArgs>, stdin = Buffer.alloc(0)) =>
  Effect.gen(function*() {
    const out: Array<Buffer> = []
    const io: Io = {
      stdin: Effect.succeed(stdin),
      stdout: (bytes) => Effect.sync(() => void out.push(bytes)),
      stderr: () => {},
      isTTY: false
    }
    yield* rpcCallProgram(args(overrides), io)
    return Buffer.concat(out).toString()
  })

describe("warren rpc call: the program against a real broker and a plain amqplib server", () => {
  it.scopedLive("calls an exchange another program declared (durable, not auto-delete) and prints the reply", () =>
    Effect.gen(function*() {
      const exchange = unique("ex")
      const server = yield* startServer({ exchange: { name: exchange, type: "topic", routingKey: "jobs.#" } })
      assert.strictEqual(yield* call({ exchange, routingKey: "jobs.one", payload: "work" }), "re:work")
      const request = server.received[0]
      assert.match(String(request?.properties.replyTo), /^amq\.gen-/)
      assert.isString(request?.properties.correlationId)
    }))

  it.scopedLive("--exchange-type is checked against the existing exchange", () =>
    Effect.gen(function*() {
      const exchange = unique("typed")
      yield* startServer({ exchange: { name: exchange, type: "topic", routingKey: "jobs.#" } })
      const wrong = yield* Effect.flip(call({ exchange, exchangeType: Option.some("direct"), routingKey: "jobs.a" }))
      assert.strictEqual(wrong._tag, "CliFailure")
      assert.match(wrong.message, /is not a durable direct exchange/)
      assert.strictEqual(
        yield* call({ exchange, exchangeType: Option.some("topic"), routingKey: "jobs.b", payload: "t" }),
        "re:t"
      )
    }))

  it.scopedLive("headers, content type and a payload from stdin reach the server", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ raw: true })
      const big = Buffer.alloc(300 * 1024, 7)
      const reply = yield* call({
        routingKey: server.queue,
        payload: "-",
        header: Option.some(HashMap.make(["trace", "abc"], ["tenant", "t1"])),
        contentType: Option.some("application/octet-stream")
      }, big)
      assert.strictEqual(reply.length, big.length)
      const request = server.received[0]!
      // (RpcClient may add its own headers, e.g. asking for error replies.)
      assert.strictEqual(request.properties.headers?.["trace"], "abc")
      assert.strictEqual(request.properties.headers?.["tenant"], "t1")
      assert.strictEqual(request.properties.contentType, "application/octet-stream")
    }))

  it.scopedLive("--json pretty-prints a JSON reply and fails on anything else", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ raw: true })
      assert.strictEqual(
        yield* call({ routingKey: server.queue, payload: "{\"a\":[1]}", json: true }),
        "{\n  \"a\": [\n    1\n  ]\n}\n"
      )
      const error = yield* Effect.flip(call({ routingKey: server.queue, payload: "not json", json: true }))
      assert.strictEqual(error._tag, "CliFailure")
    }))

  it.scopedLive("--count and --concurrency: a load test that prints percentiles", () =>
    Effect.gen(function*() {
      const server = yield* startServer({})
      const out = yield* call({ routingKey: server.queue, count: 40, concurrency: 4 })
      assert.match(out, /^requests: 40 ok, 0 failed in [\d.]+ s \(\d+ req\/s, concurrency 4\)$/m)
      assert.match(out, /^latency ms: p50 [\d.]+ {2}p90 [\d.]+ {2}p99 [\d.]+ {2}max [\d.]+$/m)
      assert.strictEqual(server.received.length, 40)
    }))

  it.scopedLive("no reply in time, nothing bound, a missing exchange, no broker: one clear failure each", () =>
    Effect.gen(function*() {
      const silent = yield* startServer({ silent: true })
      const late = yield* Effect.flip(call({ routingKey: silent.queue, timeout: Duration.millis(300) }))
      assert.match(late.message, /no reply within 300ms/)
      const unroutable = yield* Effect.flip(call({ routingKey: unique("nobody") }))
      assert.match(unroutable.message, /^unroutable: no queue is bound to the default exchange/)
      const missing = yield* Effect.flip(call({ exchange: unique("missing"), routingKey: "x" }))
      assert.match(missing.message, /^exchange "[^"]+" does not exist$/)
      const port = yield* closedPort
      const refused = yield* Effect.flip(call({ url: `amqp://guest:secret@127.0.0.1:${port}`, routingKey: "x" }))
      assert.match(refused.message, /^AMQP connect to amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+ failed \(Refused\)/)
      assert.notInclude(refused.message, "secret")
    }))

  it.scopedLive("a port that accepts TCP but never speaks AMQP: a connect failure naming the stalled handshake", () =>
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
      const stalled = yield* Effect.flip(
        call({ url: `amqp://127.0.0.1:${port}`, routingKey: "x", timeout: Duration.seconds(2) })
      )
      assert.match(stalled.message, /\(HandshakeTimeout\)/)
    }))
})

describe("warren rpc call: the command as a process", () => {
  it.scopedLive("prints the reply and exits 0; a timeout is one stderr line and exit 1", () =>
    Effect.gen(function*() {
      const server = yield* startServer({})
      const ok = yield* runWarren([
        "rpc",
        "call",
        "--url",
        brokerUrl(),
        "-k",
        server.queue,
        "--timeout",
        "10000",
        "from a process"
      ])
      assert.strictEqual(ok.code, 0, ok.stderr)
      assert.strictEqual(ok.stdout, "re:from a process")
      const silent = yield* startServer({ silent: true })
      const late = yield* runWarren(["rpc", "call", "--url", brokerUrl(), "-k", silent.queue, "--timeout", "500", "x"])
      assert.strictEqual(late.code, 1)
      assert.strictEqual(late.stdout, "")
      assert.match(late.stderr, /^warren rpc call: no reply within 500ms[^\n]*\n$/)
    }), 180_000)

  it.live(
    "usage errors: exit 2, one line naming the flag, no password; --help on stdout",
    () =>
      Effect.gen(function*() {
        const badUrl = yield* runWarren([
          "rpc",
          "call",
          "--url",
          "amqp://guest:s3cret@127.0.0.1:notaport",
          "-k",
          "q",
          "x"
        ])
        assert.strictEqual(badUrl.code, 2)
        assert.notInclude(badUrl.stderr + badUrl.stdout, "s3cret")
        assert.strictEqual(badUrl.stderr.trim(), "--url: not a URL: amqp://guest:***@127.0.0.1:notaport")
        const bogus = yield* runWarren([
          "rpc",
          "call",
          "--url",
          "amqp://127.0.0.1",
          "--exchange-type",
          "bogus",
          "-k",
          "q",
          "x"
        ])
        assert.strictEqual(bogus.code, 2)
        assert.strictEqual(
          bogus.stderr.trim(),
          "--exchange-type: expected one of direct, fanout, topic, headers, got \"bogus\""
        )
        const help = yield* runWarren(["rpc", "call", "--help"])
        assert.strictEqual(help.code, 0)
        assert.include(help.stdout, "--concurrency")
        assert.include(help.stdout, "Exit codes: 0 success; 1 failure")
        assert.strictEqual(help.stderr, "")
      }),
    180_000
  )
})
