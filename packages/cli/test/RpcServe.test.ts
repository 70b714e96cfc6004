import { assert, describe, inject, it } from "@effect/vitest"
import amqp from "amqplib"
import { Effect } from "effect"
import { runWarren, spawnScoped, waitForLine } from "./support/warren.js"

declare module "vitest" {
  export interface ProvidedContext {
    broker: { readonly url: string }
  }
}

const brokerUrl = () => inject("broker").url
let counter = 0
const unique = (label: string) => `warren-cli-serve-${label}-${process.pid}-${++counter}`

/** `warren rpc serve` as a process; resolves once it consumes (and with its metrics port). */
const serve = (queue: string, command: string, extra: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const server = yield* spawnScoped([
      "rpc",
      "serve",
      "--url",
      brokerUrl(),
      "--queue",
      queue,
      "--exec",
      command,
      "--metrics-port",
      "0",
      ...extra
    ])
    const metrics = yield* waitForLine(server, /^metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics$/m)
    yield* waitForLine(server, /^ready /m)
    return { server, metricsUrl: metrics[1]! }
  })

/** A raw amqplib request, to see the reply's headers. */
const rawRequest = (queue: string, body: string) =>
  Effect.promise(async () => {
    const connection = await amqp.connect(brokerUrl())
    try {
      const channel = await connection.createChannel()
      const { queue: replyTo } = await channel.assertQueue("", { exclusive: true })
      const reply = new Promise<amqp.ConsumeMessage>((resolve) => {
        void channel.consume(replyTo, (message) => message !== null && resolve(message), { noAck: true })
      })
      channel.sendToQueue(queue, Buffer.from(body), { replyTo, correlationId: "c1" })
      return await reply
    } finally {
      await connection.close()
    }
  })

describe("warren rpc serve --exec", () => {
  it.scopedLive(
    "`--exec cat` answers `warren rpc call` with the request body; /metrics counts the requests",
    () =>
      Effect.gen(function*() {
        const queue = unique("cat")
        const { metricsUrl, server } = yield* serve(queue, "cat", ["--concurrency", "4", "--prefetch", "8"])
        const health = yield* Effect.promise(() => fetch(`${metricsUrl}/healthz`).then((r) => r.text()))
        assert.strictEqual(health, "ready\n")
        for (const body of ["one", "two", "three"]) {
          const call = yield* runWarren(["rpc", "call", "--url", brokerUrl(), "-k", queue, body])
          assert.strictEqual(call.code, 0, call.stderr)
          assert.strictEqual(call.stdout, body)
        }
        const fromStdin = yield* runWarren(["rpc", "call", "--url", brokerUrl(), "-k", queue, "-"], "piped in")
        assert.strictEqual(fromStdin.stdout, "piped in")
        const text = yield* Effect.promise(() => fetch(`${metricsUrl}/metrics`).then((r) => r.text()))
        assert.match(text, new RegExp(`^warren_(amqp_)?rpc_server_requests_total\\{server="exec:${queue}"\\} 4$`, "m"))
        assert.match(text, new RegExp(`^warren_(amqp_)?rpc_server_replies_total\\{server="exec:${queue}"\\} 4$`, "m"))
        assert.match(text, /^warren_cli_exec_requests_total\{outcome="ok"\} 4$/m)
        assert.match(text, /^warren_amqp_connection_connected\{.*\} 1$/m)
        const status = yield* runWarren(["status", "--metrics-url", metricsUrl])
        assert.strictEqual(status.code, 0, status.stderr)
        assert.match(status.stdout, /^ready\n/)
        assert.include(status.stdout, "warren_cli_exec_requests_total")
        const code = yield* Effect.async<number | null>((resume) => {
          server.child.once("exit", (code) => resume(Effect.succeed(code)))
          server.child.kill("SIGTERM")
        })
        assert.strictEqual(code, 0, server.output.stderr)
      }),
    300_000
  )

  it.scopedLive(
    "a command that exits non-zero: the reply is its stderr with the x-warren-error header",
    () =>
      Effect.gen(function*() {
        const queue = unique("fail")
        yield* serve(queue, "cat >/dev/null; echo 'no such record' >&2; exit 3")
        const reply = yield* rawRequest(queue, "lookup 42")
        assert.strictEqual(reply.content.toString(), "no such record\n")
        assert.strictEqual(reply.properties.correlationId, "c1")
        assert.deepStrictEqual(reply.properties.headers?.["x-warren-error"], "exit 3: no such record")
      }),
    300_000
  )
})
