import { assert, it } from "@effect/vitest"
import amqp from "amqplib"
import { TestBroker } from "@warren/amqp/testing"
import { Effect, Exit } from "effect"
import { amqpUrl, broker, closeConnection, listConnections, startApp, stopApp, withAdminChannel } from "./support/faults.js"

const connect = (name: string) =>
  Effect.acquireRelease(
    Effect.promise(() => amqp.connect(amqpUrl(), { clientProperties: { connection_name: name } })),
    (connection) => Effect.promise(() => connection.close().catch(() => undefined))
  )

const closed = (connection: amqp.ChannelModel) =>
  Effect.async<string>((resume) => {
    connection.on("error", () => {})
    connection.once("close", (error?: Error) => resume(Effect.succeed(error?.message ?? "clean")))
  })

it.scopedLive("the harness gives a real broker that accepts connections", () =>
  Effect.gen(function*() {
    const connection = yield* connect("warren-test-harness")
    const channel = yield* Effect.promise(() => connection.createChannel())
    const queue = yield* Effect.promise(() => channel.assertQueue("", { exclusive: true }))
    assert.match(queue.queue, /^amq\.gen-/)
    const names = (yield* listConnections).map((row) => row.connectionName)
    if (broker().kind === "local") assert.include(names, "warren-test-harness")
  }))

it.scopedLive("closeConnection closes one named connection from the broker side and leaves others", () =>
  Effect.gen(function*() {
    const victim = yield* connect("warren-test-victim")
    const bystander = yield* connect("warren-test-bystander")
    const victimClosed = yield* Effect.fork(closed(victim))
    assert.strictEqual(yield* closeConnection("warren-test-victim", "fault injection"), 1)
    const reason = yield* victimClosed.await
    assert.isTrue(Exit.isSuccess(reason))
    if (Exit.isSuccess(reason)) assert.match(reason.value, /CONNECTION_FORCED|fault injection/)
    const channel = yield* Effect.promise(() => bystander.createChannel())
    yield* Effect.promise(() => channel.checkExchange("amq.direct"))
  }))

it.scopedLive("stopApp drops every connection and refuses new ones until startApp", () =>
  Effect.gen(function*() {
    const connection = yield* connect("warren-test-outage")
    const wasClosed = yield* Effect.fork(closed(connection))
    yield* stopApp
    yield* wasClosed.await
    const refused = yield* Effect.exit(Effect.tryPromise(() => amqp.connect(amqpUrl())))
    assert.isTrue(Exit.isFailure(refused))
    yield* startApp
    const again = yield* connect("warren-test-after-outage")
    yield* Effect.promise(() => again.createChannel())
  }).pipe(Effect.ensuring(Effect.ignore(startApp))))

it.scopedLive("a publish to a deleted exchange closes that channel only (404)", () =>
  Effect.gen(function*() {
    yield* withAdminChannel((ch) => ch.assertExchange("warren-test-doomed", "direct", { autoDelete: false }))
    const connection = yield* connect("warren-test-channel-error")
    const channel = yield* Effect.promise(() => connection.createChannel())
    const channelClosed = Effect.async<string>((resume) => {
      channel.on("error", (error: Error) => resume(Effect.succeed(error.message)))
    })
    yield* withAdminChannel((ch) => ch.deleteExchange("warren-test-doomed"))
    channel.publish("warren-test-doomed", "", Buffer.from("x"))
    assert.match(yield* channelClosed, /404/)
    const other = yield* Effect.promise(() => connection.createChannel())
    yield* Effect.promise(() => other.checkExchange("amq.direct"))
  }))

it.scopedLive("TestBroker.make gives a private node for the life of a Scope", () =>
  Effect.gen(function*() {
    const info = yield* Effect.scoped(Effect.gen(function*() {
      const info = yield* TestBroker.make
      const connection = yield* Effect.acquireRelease(
        Effect.promise(() => amqp.connect(info.url)),
        (connection) => Effect.promise(() => connection.close())
      )
      yield* Effect.promise(() => connection.createChannel())
      return info
    }))
    if (info.kind === "local") {
      const refused = yield* Effect.exit(Effect.tryPromise(() => amqp.connect(info.url)))
      assert.isTrue(Exit.isFailure(refused), "the node is stopped when the Scope closes")
    }
  }), 120_000)
