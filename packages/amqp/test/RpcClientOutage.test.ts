/**
 * The RPC client across a full broker outage (stop_app / start_app). In its own file: the outage breaks every
 * connection to the broker, and the amqp project runs its files one after another (single fork).
 */
import { assert, describe, it } from "@effect/vitest"
import { AmqpConnection, Reconnect, RpcClient } from "@warren/amqp"
import amqp from "amqplib"
import type * as Amqp from "amqplib"
import { Duration, Effect, Fiber, Option, Queue, Stream, TestClock } from "effect"
import { amqpUrl, startApp, stopApp, withAdminChannel } from "./support/faults.js"

const unique = (label: string) => `warren-rpcc-outage-${label}-${process.pid}`

/** A plain amqplib server consuming a durable queue (it survives the outage); `echo` answers at once. */
const startServer = (queue: string, echo: boolean) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const connection = await amqp.connect(amqpUrl(), { noDelay: true })
      connection.on("error", () => {})
      const channel = await connection.createChannel()
      channel.on("error", () => {})
      await channel.assertQueue(queue, { durable: true, autoDelete: false })
      const arrivals = Effect.runSync(Queue.unbounded<Amqp.ConsumeMessage>())
      await channel.consume(queue, (message) => {
        if (message === null) return
        Queue.unsafeOffer(arrivals, message)
        if (echo) {
          channel.publish("", message.properties.replyTo, message.content, {
            correlationId: message.properties.correlationId
          })
        }
      }, { noAck: true })
      return { connection, arrivals }
    }),
    ({ connection }) => Effect.promise(() => connection.close().catch(() => undefined))
  ).pipe(Effect.map(({ arrivals }) => arrivals))

describe.sequential("RpcClient across a broker outage", () => {
  it.scopedLive("in-flight requests fail at once; requests made during the outage wait and are answered after it", () =>
    Effect.gen(function*() {
      const queue = unique("work")
      yield* Effect.addFinalizer(() =>
        Effect.ignore(startApp).pipe(
          Effect.zipRight(Effect.ignore(withAdminChannel((channel) => channel.deleteQueue(queue))))
        )
      )
      const connection = yield* AmqpConnection.make({
        urls: amqpUrl(),
        connectionName: unique("client"),
        reconnect: Reconnect.fromDelays(["200 millis"])
      })
      const client = yield* RpcClient.make({ timeout: "30 seconds", reconnect: Reconnect.fromDelays(["100 millis"]) }).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, connection)
      )
      const held = yield* startServer(queue, false)
      const inFlight = yield* Effect.fork(client.request("in flight", queue))
      yield* Queue.take(held)

      yield* stopApp
      const error = yield* Effect.flip(Fiber.join(inFlight))
      assert.strictEqual(error._tag, "RpcChannelLost")
      if (error._tag === "RpcChannelLost") assert.strictEqual(error.cause.reason, "ConnectionLost")
      const during = yield* Effect.fork(client.request("during the outage", queue))
      const before = yield* client.stats
      assert.isAtMost(before.sessions, 1)

      yield* startApp
      yield* startServer(queue, true)
      const reply = yield* Fiber.join(during)
      assert.strictEqual(reply.toString("utf8"), "during the outage")
      const state = yield* client.state.changes.pipe(
        Stream.filter((s) => s._tag === "Ready"),
        Stream.runHead,
        Effect.map(Option.getOrThrow)
      )
      assert.strictEqual(state._tag, "Ready")
      assert.strictEqual((yield* client.stats).sessions, 2)
      assert.strictEqual((yield* client.stats).channelLost, 1)
    }))

  it.scoped("with the default policies, a long outage ends in service within 2 s of the broker's return (TestClock)", () =>
    Effect.gen(function*() {
      const queue = unique("long")
      yield* Effect.addFinalizer(() =>
        Effect.ignore(startApp).pipe(
          Effect.zipRight(Effect.ignore(withAdminChannel((channel) => channel.deleteQueue(queue))))
        )
      )
      // Defaults everywhere: the connection's and the client's reconnect policies.
      const connection = yield* AmqpConnection.make({ urls: amqpUrl(), connectionName: unique("long-client") })
      const client = yield* RpcClient.make({ timeout: "2 hours" }).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, connection)
      )
      yield* client.state.changes.pipe(Stream.filter((s) => s._tag === "Ready"), Stream.runHead)
      yield* stopApp
      yield* connection.state.changes.pipe(Stream.filter((s) => s._tag === "Disconnected"), Stream.runHead)
      // A 20-minute outage on the TestClock: every attempt in it fails (for real, against the stopped broker).
      const realPause = Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 30)))
      for (let minute = 0; minute < 20; minute++) {
        yield* TestClock.adjust("1 minute")
        yield* realPause
      }
      yield* startApp
      yield* startServer(queue, true)
      const request = yield* Effect.fork(client.request("after the outage", queue))
      // Whatever attempt is running ends; if it failed, the next one is at most 2 s away (the default cap).
      const next = yield* connection.state.changes.pipe(
        Stream.filter((s) => s._tag !== "Connecting"),
        Stream.runHead,
        Effect.map(Option.getOrThrow)
      )
      if (next._tag === "Disconnected") {
        const retryIn = Option.getOrThrow(next.retryIn)
        assert.isAtMost(Duration.toMillis(retryIn), 2000)
        yield* TestClock.adjust(retryIn)
      }
      // The client's channel follows the connection at once: no delay of its own after a connection loss.
      assert.strictEqual((yield* Fiber.join(request)).toString("utf8"), "after the outage")
    }), 90_000)
})
