/**
 * The Promise API (`@warren/amqp/promise`) against the real broker: request/reply, a timeout caught the way an
 * amqplib program would (instanceof + `_tag`), close, the server form, a failing first connect.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  AmqpConnectError,
  AmqpError,
  connect,
  RpcClientStopped,
  RpcTimeout,
  RpcUnroutable,
  serve
} from "@warren/amqp/promise"
import * as net from "node:net"
import { amqpUrl } from "./support/faults.js"

let counter = 0
const uniqueQueue = (label: string) => `warren.promise.${label}.${process.pid}.${++counter}`

/** A port nothing listens on (it was listening a moment ago). */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

describe("@warren/amqp/promise (real broker)", () => {
  it("serve + connect: request/reply with an async handler; a rejecting handler does not stop the server", async () => {
    const queue = uniqueQueue("echo")
    const server = await serve(amqpUrl(), { queue, concurrency: 4 }, async (payload, meta) => {
      if (payload.toString() === "boom") throw new Error("handler failed")
      await new Promise((resolve) => setImmediate(resolve))
      return `${meta.routingKey}:${payload.toString().toUpperCase()}`
    })
    const rpc = await connect(amqpUrl(), { timeout: "5 seconds" })
    try {
      assert.strictEqual((await rpc.request("ping", queue)).toString(), `${queue}:PING`)
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => rpc.request(`r${i}`, queue)))
      assert.deepStrictEqual(
        replies.map((reply) => reply.toString()),
        Array.from({ length: 20 }, (_, i) => `${queue}:R${i}`)
      )
      // the failing request gets no reply (it is rejected without requeue): the caller's timeout says so
      const failed = await rpc.request("boom", queue, { timeout: 300 }).then(() => undefined, (error: unknown) => error)
      assert.instanceOf(failed, RpcTimeout)
      assert.strictEqual((await rpc.request("after", queue)).toString(), `${queue}:AFTER`)
    } finally {
      await rpc.close()
      await server.close()
    }
  })

  it("an error reply rejects with the typed error itself (unroutable), and spans on take the runtime path", async () => {
    const queue = uniqueQueue("spans")
    const server = await serve(amqpUrl(), { queue }, (payload) => payload)
    const plain = await connect(amqpUrl())
    // spans: true makes a request run in the client's runtime (a span needs a fiber): same results
    const traced = await connect(amqpUrl(), { spans: true })
    try {
      for (const rpc of [plain, traced]) {
        const unroutable = await rpc.request("x", uniqueQueue("nobody"), { mandatory: true }).then(
          () => undefined,
          (error: unknown) => error
        )
        assert.instanceOf(unroutable, RpcUnroutable)
        assert.strictEqual((await rpc.request("same", queue)).toString(), "same")
      }
    } finally {
      await plain.close()
      await traced.close()
      await server.close()
    }
  })

  it("a timeout rejects with RpcTimeout: an Error subclass with a _tag, caught as with amqplib", async () => {
    const rpc = await connect(amqpUrl())
    try {
      let caught: unknown
      try {
        // nobody consumes this routing key: the request is dropped by the broker and never answered
        await rpc.request("hello", uniqueQueue("nobody"), { timeout: 200 })
        assert.fail("the request must time out")
      } catch (error) {
        caught = error
      }
      assert.instanceOf(caught, RpcTimeout)
      assert.instanceOf(caught, Error)
      const timeout = caught as RpcTimeout
      assert.strictEqual(timeout._tag, "RpcTimeout")
      assert.match(timeout.message, /got no reply within 200ms/)
      assert.isString(timeout.stack)
    } finally {
      await rpc.close()
    }
  })

  it("close: later requests reject with RpcClientStopped; close twice is fine", async () => {
    const rpc = await connect(amqpUrl())
    await rpc.close()
    const error = await rpc.request("late", "any").then(() => undefined, (e: unknown) => e)
    assert.instanceOf(error, RpcClientStopped)
    assert.instanceOf(error, Error)
    assert.strictEqual((error as RpcClientStopped)._tag, "RpcClientStopped")
    await rpc.close()
  })

  it("close with requests in flight: they settle (drained: reply or timeout) before close resolves", async () => {
    const queue = uniqueQueue("slow")
    const server = await serve(amqpUrl(), { queue, concurrency: 8 }, async (payload) => {
      await new Promise((resolve) => setTimeout(resolve, 100))
      return payload
    })
    const rpc = await connect(amqpUrl(), { timeout: "5 seconds" })
    try {
      // warm the worker pool, then leave 8 requests in flight (4 answered, 4 to nobody with a short timeout)
      await Promise.all(Array.from({ length: 8 }, (_, i) => rpc.request(`warm${i}`, queue)))
      const answered = Array.from({ length: 4 }, (_, i) => rpc.request(`a${i}`, queue))
      const unanswered = Array.from(
        { length: 4 },
        (_, i) => rpc.request(`u${i}`, uniqueQueue("nobody"), { timeout: 200 }).then(() => "reply", (e: unknown) => e)
      )
      await rpc.close()
      assert.deepStrictEqual((await Promise.all(answered)).map(String), ["a0", "a1", "a2", "a3"])
      for (const outcome of await Promise.all(unanswered)) assert.instanceOf(outcome, RpcTimeout)
      const late = await rpc.request("late", queue).then(() => undefined, (e: unknown) => e)
      assert.instanceOf(late, RpcClientStopped)
    } finally {
      await rpc.close()
      await server.close()
    }
  })

  it("a first connect that fails rejects with AmqpConnectError (reason, redacted URL)", async () => {
    const port = await closedPort()
    const error = await connect(`amqp://guest:s3cret@127.0.0.1:${port}`).then(() => undefined, (e: unknown) => e)
    assert.instanceOf(error, AmqpConnectError)
    assert.instanceOf(error, Error)
    const connectError = error as AmqpConnectError
    assert.strictEqual(connectError._tag, "AmqpConnectError")
    assert.strictEqual(connectError.reason, "Refused")
    assert.strictEqual(connectError.url, `amqp://guest:***@127.0.0.1:${port}`)
    assert.notInclude(connectError.message, "s3cret")

    const wrong = new URL(amqpUrl())
    wrong.password = "wrong"
    const refused = await serve(wrong.toString(), { queue: uniqueQueue("never") }, (payload) => payload).then(
      () => undefined,
      (e: unknown) => e
    )
    assert.instanceOf(refused, AmqpConnectError)
    assert.strictEqual((refused as AmqpConnectError).reason, "AccessRefused")
  })

  it("invalid options reject with the typed config error", async () => {
    const badUrl = await connect("http://guest:s3cret@127.0.0.1").then(() => undefined, (e: unknown) => e)
    assert.instanceOf(badUrl, AmqpError)
    assert.strictEqual((badUrl as AmqpError).reason, "Config")
    assert.notInclude((badUrl as AmqpError).message, "s3cret")
    const badClient = await connect(amqpUrl(), { maxInFlight: -1 }).then(() => undefined, (e: unknown) => e)
    assert.instanceOf(badClient, AmqpError)
    assert.strictEqual((badClient as AmqpError).reason, "Config")
  })
})
