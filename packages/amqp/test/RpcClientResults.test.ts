/**
 * Hare's callback results on the client, exactly: each `stop` result and where requests parked while disconnected
 * go; the `infinity` timeout; typed errors (setup refused, timeout with `published`, remote errors).
 */
import { assert, describe, it } from "@effect/vitest"
import { AmqpConnection, Reconnect, RpcClient, RpcServer } from "@warren/amqp"
import { Process } from "@warren/process"
import amqp from "amqplib"
import type * as Amqp from "amqplib"
import { Duration, Effect, Fiber, Option, Queue, Stream, TestClock } from "effect"
import { amqpUrl, deleteQueue, withAdminChannel } from "./support/faults.js"

let counter = 0
const unique = (label: string) => `warren-rpcr-${label}-${process.pid}-${++counter}`

const withConnection = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    AmqpConnection.make({ urls: amqpUrl(), connectionName: unique(label), reconnect: Reconnect.fromDelays(["50 millis"]) }),
    (connection) => Effect.provideService(effect, AmqpConnection.AmqpConnection, connection)
  )

/** A plain amqplib server on `queue`: records every request; `echo` answers it, `hold` does not. */
const plainServer = (mode: "echo" | "hold") =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const connection = await amqp.connect(amqpUrl(), { clientProperties: { connection_name: unique("server") } })
      connection.on("error", () => {})
      const channel = await connection.createChannel()
      const { queue } = await channel.assertQueue(unique("queue"), { exclusive: true, autoDelete: true })
      const arrivals = Effect.runSync(Queue.unbounded<Amqp.ConsumeMessage>())
      const received: Array<string> = []
      await channel.consume(queue, (message) => {
        if (message === null) return
        received.push(message.content.toString())
        Queue.unsafeOffer(arrivals, message)
        if (mode === "echo") {
          channel.publish("", message.properties.replyTo, message.content, { correlationId: message.properties.correlationId })
        }
      }, { noAck: true })
      return { connection, server: { queue, arrivals, received } }
    }),
    ({ connection }) => Effect.promise(() => connection.close().catch(() => undefined))
  ).pipe(Effect.map(({ server }) => server))

const text = (buffer: Buffer) => buffer.toString("utf8")

const awaitState = (client: { readonly state: RpcClient.Client["state"] }, tag: RpcClient.ClientState["_tag"]) =>
  client.state.changes.pipe(Stream.filter((state) => state._tag === tag), Stream.runHead, Effect.map(Option.getOrThrow))

/**
 * A client whose `connected` / `handleReady` returns `stop` on the second channel: the first channel is lost (its
 * reply queue deleted) and reopens only after 10 s on the TestClock; a request made meanwhile is parked.
 */
const parkedThenStopped = (which: "connected" | "handleReady") =>
  Effect.gen(function*() {
    const server = yield* plainServer("echo")
    const decide = (state: number) => state === 0 ? Process.noreply(1) : Process.stop(`${which} says stop`, state)
    const callbacks: RpcClient.Callbacks<void, number, never, string> = {
      init: () => Process.ok(0),
      ...(which === "connected" ? { connected: (_meta, state) => decide(state) } : { handleReady: (_meta, state) => decide(state) })
    }
    const client = yield* RpcClient.start(callbacks, undefined, {
      timeout: "1 minute",
      reconnect: Reconnect.fromDelays(["10 seconds"])
    })
    const ready = yield* awaitState(client, "Ready")
    if (ready._tag !== "Ready") return assert.fail("not ready")
    yield* deleteQueue(ready.meta.replyQueue)
    yield* awaitState(client, "Reconnecting")
    const parked = yield* Effect.fork(client.request("parked", server.queue))
    yield* Effect.repeat(client.stats, { until: (stats) => stats.waiting === 1 })
    yield* TestClock.adjust("10 seconds")
    const error = yield* Effect.flip(Fiber.join(parked))
    assert.strictEqual(error._tag, "RpcClientStopped")
    if (error._tag === "RpcClientStopped") assert.deepStrictEqual(error.reason, Process.stopped(`${which} says stop`))
    assert.deepStrictEqual(yield* client.await, Process.stopped(`${which} says stop`))
    // Never published: the echo server received nothing.
    assert.deepStrictEqual(server.received, [])
    assert.strictEqual((yield* client.stats).published, 0)
  })

describe("RpcClient: Hare's stop results", () => {
  it.scopedLive("handleRequest {stop, r, s}: the caller fails with the stop reason, nothing is published", () =>
    withConnection("stop-request", Effect.gen(function*() {
      const server = yield* plainServer("echo")
      const client = yield* RpcClient.start<void, number, never, string>({
        init: () => Process.ok(0),
        handleRequest: (payload, _routingKey, _options, state) =>
          text(payload) === "stop" ? Process.stop("asked to stop", state) : RpcClient.proceed(state + 1)
      }, undefined, {})
      assert.strictEqual(text(yield* client.request("fine", server.queue)), "fine")
      const error = yield* Effect.flip(client.request("stop", server.queue))
      assert.strictEqual(error._tag, "RpcClientStopped")
      if (error._tag === "RpcClientStopped") assert.deepStrictEqual(error.reason, Process.stopped("asked to stop"))
      assert.deepStrictEqual(yield* client.await, Process.stopped("asked to stop"))
      assert.deepStrictEqual(server.received, ["fine"])
    })))

  it.scoped("connected stop: a request parked while disconnected is never published", () =>
    withConnection("stop-connected", parkedThenStopped("connected")))

  it.scoped("handleReady stop: a request parked while disconnected is never published", () =>
    withConnection("stop-ready", parkedThenStopped("handleReady")))

  it.scopedLive("handleInfo stop: the client stops with the reason, later requests fail", () =>
    withConnection("stop-info", Effect.gen(function*() {
      const server = yield* plainServer("echo")
      const client = yield* RpcClient.start<void, number, string, string>({
        init: () => Process.ok(0),
        handleInfo: (message, state) => message === "stop" ? Process.stop("told to", state) : Process.noreply(state)
      }, undefined, {})
      assert.strictEqual(text(yield* client.request("before", server.queue)), "before")
      yield* client.send("stop")
      assert.deepStrictEqual(yield* client.await, Process.stopped("told to"))
      const error = yield* Effect.flip(client.request("after", server.queue))
      assert.strictEqual(error._tag, "RpcClientStopped")
      assert.deepStrictEqual(server.received, ["before"])
    })))
})

describe("RpcClient: timeouts (TestClock)", () => {
  it.scoped("an infinite timeout never expires; the reply still arrives", () =>
    withConnection("infinity", Effect.gen(function*() {
      const server = yield* plainServer("hold")
      const client = yield* RpcClient.make({})
      const call = yield* Effect.fork(client.request("forever", server.queue, {}, Duration.infinity))
      const request = yield* Queue.take(server.arrivals)
      yield* TestClock.adjust("365 days")
      assert.isTrue(Option.isNone(yield* Fiber.poll(call)), "still waiting after a year")
      yield* withAdminChannel(async (channel) => {
        channel.publish("", request.properties.replyTo, Buffer.from("at last"), {
          correlationId: request.properties.correlationId
        })
      })
      assert.strictEqual(text(yield* Fiber.join(call)), "at last")
    })))

  it.scoped("RpcTimeout says whether the request had been published", () =>
    withConnection("published", Effect.gen(function*() {
      const server = yield* plainServer("hold")
      const client = yield* RpcClient.make({ reconnect: Reconnect.fromDelays(["1 hour"]) })
      const inFlight = yield* Effect.fork(client.request("sent", server.queue, {}, "1 second"))
      yield* Queue.take(server.arrivals)
      yield* TestClock.adjust("1 second")
      const sent = yield* Effect.flip(Fiber.join(inFlight))
      assert.isTrue(sent._tag === "RpcTimeout" && sent.published)
      // Channel down for an hour (the reply queue deleted): a request made now is parked and never sent.
      const ready = yield* awaitState(client, "Ready")
      if (ready._tag !== "Ready") return assert.fail("not ready")
      yield* deleteQueue(ready.meta.replyQueue)
      yield* awaitState(client, "Reconnecting")
      const parked = yield* Effect.fork(client.request("parked", server.queue, {}, "1 second"))
      yield* Effect.repeat(client.stats, { until: (stats) => stats.waiting === 1 })
      yield* TestClock.adjust("1 second")
      const unsent = yield* Effect.flip(Fiber.join(parked))
      assert.isTrue(unsent._tag === "RpcTimeout" && !unsent.published)
      assert.match(unsent.message, /never published/)
    })))
})

describe("RpcClient: typed errors", () => {
  it.scopedLive("a missing passive exchange fails requests with RpcChannelSetupFailed { ExchangeNotFound }", () =>
    withConnection("setup-404", Effect.gen(function*() {
      const client = yield* RpcClient.make({
        exchange: { name: unique("missing"), passive: true },
        reconnect: Reconnect.fromDelays(["1 hour"])
      })
      const error = yield* Effect.flip(client.request("x", "k"))
      assert.strictEqual(error._tag, "RpcChannelSetupFailed")
      if (error._tag !== "RpcChannelSetupFailed") return
      assert.strictEqual(error.reason, "ExchangeNotFound")
      assert.match(error.step, /^exchange\.declare/)
      // Later requests fail at once too while the setup stays refused.
      const again = yield* Effect.flip(client.request("y", "k"))
      assert.strictEqual(again._tag, "RpcChannelSetupFailed")
    })))

  it.scopedLive("an exchange declared with other arguments fails with RpcChannelSetupFailed { PreconditionFailed }", () =>
    withConnection("setup-406", Effect.gen(function*() {
      const name = unique("ex")
      yield* withAdminChannel((channel) => channel.assertExchange(name, "direct", { durable: false, autoDelete: false }))
      yield* Effect.addFinalizer(() => Effect.ignore(withAdminChannel((channel) => channel.deleteExchange(name))))
      const client = yield* RpcClient.make({
        exchange: { name, type: "topic" },
        reconnect: Reconnect.fromDelays(["1 hour"])
      })
      const error = yield* Effect.flip(client.request("x", "k"))
      assert.strictEqual(error._tag, "RpcChannelSetupFailed")
      if (error._tag === "RpcChannelSetupFailed") assert.strictEqual(error.reason, "PreconditionFailed")
    })))

  it.scopedLive("a failing RpcServer handler answers a remoteErrors client with RpcRemoteError at once", () =>
    withConnection("remote", Effect.gen(function*() {
      const queue = unique("remote")
      const server = yield* RpcServer.serve(
        { queue: { name: queue, options: { autoDelete: true } } },
        (payload) => text(payload) === "boom" ? Effect.fail(new Error("the handler blew up")) : Effect.succeed(payload)
      )
      yield* RpcServer.awaitReady(server)
      const client = yield* RpcClient.make({ remoteErrors: true, timeout: "20 seconds" })
      assert.strictEqual(text(yield* client.request("fine", queue)), "fine")
      const error = yield* Effect.flip(client.request("boom", queue))
      assert.strictEqual(error._tag, "RpcRemoteError")
      if (error._tag === "RpcRemoteError") assert.strictEqual(error.message, "the handler blew up")
      // A client that did not ask gets no error reply (Hare's behaviour): its request times out.
      const plain = yield* RpcClient.make({})
      const timedOut = yield* Effect.flip(plain.request("boom", queue, {}, "300 millis"))
      assert.strictEqual(timedOut._tag, "RpcTimeout")
    })))
})
