import { assert, describe, it } from "@effect/vitest"
import { AmqpConnection, Reconnect, RpcServer } from "@warren/amqp"
import { Process } from "@warren/process"
import amqp from "amqplib"
import * as Net from "node:net"
import type * as Amqp from "amqplib"
import { Deferred, Effect, Exit, Layer, Metric, Option, Queue, Ref, Scope, Stream } from "effect"
import {
  amqpUrl,
  broker,
  brokerChannelCount,
  closeConnection,
  deleteQueue,
  rabbitmqctl,
  withAdminChannel
} from "./support/faults.js"

let counter = 0
const unique = (label: string) => `warren-rpc-${label}-${process.pid}-${++counter}`

/** A reconnecting connection for the server side, named so that faults can target it. */
const serverConnection = (name: string) =>
  AmqpConnection.make({ urls: amqpUrl(), connectionName: name, reconnect: Reconnect.fromDelays(["50 millis"]) })

/** A plain amqplib client: one channel, an exclusive reply queue, replies collected in a Queue. */
const makeClient = (label: string) =>
  Effect.gen(function*() {
    const connection = yield* Effect.acquireRelease(
      Effect.promise(() => amqp.connect(amqpUrl(), { clientProperties: { connection_name: unique(`client-${label}`) } })),
      (c) => Effect.promise(() => c.close().catch(() => undefined))
    )
    const channel = yield* Effect.promise(() => connection.createChannel())
    const { queue: replyQueue } = yield* Effect.promise(() => channel.assertQueue("", { exclusive: true }))
    const replies = yield* Queue.unbounded<Amqp.ConsumeMessage>()
    yield* Effect.promise(() =>
      channel.consume(replyQueue, (message) => {
        if (message !== null) Queue.unsafeOffer(replies, message)
      }, { noAck: true })
    )
    let nextId = 0
    const publish = (exchange: string, routingKey: string, payload: string, properties: Amqp.Options.Publish = {}) =>
      Effect.sync(() => channel.publish(exchange, routingKey, Buffer.from(payload), properties))
    /** Publishes a request (reply_to = the reply queue, a fresh correlation id) and returns its correlation id. */
    const request = (exchange: string, routingKey: string, payload: string, properties: Amqp.Options.Publish = {}) => {
      const correlationId = `${label}-${++nextId}`
      return Effect.as(publish(exchange, routingKey, payload, { replyTo: replyQueue, correlationId, ...properties }), correlationId)
    }
    const nextReply = Queue.take(replies).pipe(Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("no reply") }))
    /** Sends a request and waits for a reply to it. */
    const call = (exchange: string, routingKey: string, payload: string) =>
      Effect.gen(function*() {
        const id = yield* request(exchange, routingKey, payload)
        const reply = yield* nextReply
        assert.strictEqual(reply.properties.correlationId, id)
        return reply.content.toString()
      })
    return { channel, replyQueue, replies, publish, request, nextReply, call }
  })

const counterValue = (metric: Metric.Metric.Counter<number>, server: string) =>
  Effect.map(Metric.value(Metric.tagged(metric, "server", server)), (state) => state.count)

/** Polls `effect` until `predicate` holds (about 20 tries, 100 ms apart); returns the last value. */
const eventually = <A, E>(effect: Effect.Effect<A, E>, predicate: (a: A) => boolean): Effect.Effect<A, E> =>
  Effect.gen(function*() {
    let value = yield* effect
    for (let i = 0; i < 20 && !predicate(value); i++) {
      yield* Effect.sleep("100 millis")
      value = yield* effect
    }
    return value
  })

const queueInfo = (queue: string) => withAdminChannel((ch) => ch.checkQueue(queue))

describe("RpcServer (real broker)", () => {
  it.scopedLive("echo: the reply goes to reply_to with the request's correlation id and content type", () =>
    Effect.gen(function*() {
      const name = unique("echo")
      const connection = yield* serverConnection(name)
      const serverScope = yield* Scope.make()
      const server = yield* RpcServer.serve({ queue: { name, options: { autoDelete: true } } }, RpcServer.echo).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, connection),
        Scope.extend(serverScope)
      )
      const ready = yield* RpcServer.awaitReady(server)
      assert.strictEqual(ready.queue, name)
      const client = yield* makeClient("echo")
      yield* client.publish("", name, "hello", {
        replyTo: client.replyQueue,
        correlationId: "corr-1",
        contentType: "text/plain",
        contentEncoding: "identity"
      })
      const reply = yield* client.nextReply
      assert.strictEqual(reply.content.toString(), "hello")
      assert.strictEqual(reply.properties.correlationId, "corr-1")
      assert.strictEqual(reply.properties.contentType, "text/plain")
      assert.strictEqual(reply.properties.contentEncoding, "identity")
      assert.strictEqual(reply.fields.exchange, "", "published to the default exchange")
      assert.strictEqual(reply.fields.routingKey, client.replyQueue, "routed by reply_to")
      assert.strictEqual(yield* counterValue(RpcServer.metrics.requests, name), 1)
      assert.strictEqual(yield* counterValue(RpcServer.metrics.replies, name), 1)

      // Closing the server's scope closes its channel (the connection stays).
      yield* Scope.close(serverScope, Exit.void)
      assert.strictEqual((yield* server.status.get)._tag, "Stopped")
      if (broker().kind === "local") assert.strictEqual(yield* eventually(brokerChannelCount(name), (n) => n === 0), 0)
    }))

  it.scopedLive("works with direct reply-to (amq.rabbitmq.reply-to) and as a Layer", () =>
    Effect.gen(function*() {
      const name = unique("layer")
      const live = RpcServer.layer({ queue: { name, options: { autoDelete: true } } }, RpcServer.echo).pipe(
        Layer.provide(AmqpConnection.layer({ urls: amqpUrl(), connectionName: name }))
      )
      yield* Layer.build(live)
      const connection = yield* Effect.acquireRelease(
        Effect.promise(() => amqp.connect(amqpUrl())),
        (c) => Effect.promise(() => c.close().catch(() => undefined))
      )
      const channel = yield* Effect.promise(() => connection.createChannel())
      const reply = yield* Deferred.make<Amqp.ConsumeMessage>()
      yield* Effect.promise(() =>
        channel.consume("amq.rabbitmq.reply-to", (message) => {
          if (message !== null) Deferred.unsafeDone(reply, Effect.succeed(message))
        }, { noAck: true })
      )
      // The queue may not be declared yet: retry the publish until the server answers.
      const answered = yield* Effect.gen(function*() {
        channel.publish("", name, Buffer.from("direct"), { replyTo: "amq.rabbitmq.reply-to", correlationId: "d-1" })
        return yield* Deferred.await(reply).pipe(Effect.timeout("500 millis"))
      }).pipe(Effect.retry({ times: 20 }))
      assert.strictEqual(answered.content.toString(), "direct")
      assert.strictEqual(answered.properties.correlationId, "d-1")
    }))

  it.scopedLive("a behaviour: state threads through requests; named exchange, several bindings, reply options", () =>
    Effect.gen(function*() {
      const name = unique("behaviour")
      const exchange = `${name}-x`
      const connection = yield* serverConnection(name)
      const counting: RpcServer.Behaviour<number, number> = {
        init: (n) => RpcServer.ok(n),
        handleRequest: (payload, meta, n) =>
          RpcServer.reply(
            `${n}:${payload.toString()}:${meta.routingKey}:${meta.exchange}`,
            n + 1,
            meta.routingKey === "b" ? { contentType: "application/x-b", headers: { "x-n": n } } : undefined
          )
      }
      const server = yield* RpcServer.start(
        counting,
        {
          exchange: { name: exchange, type: "direct", options: { autoDelete: true } },
          queue: { name, options: { autoDelete: true } },
          bindings: ["a", "b"]
        },
        10
      ).pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("behaviour")
      assert.strictEqual(yield* client.call(exchange, "a", "x"), `10:x:a:${exchange}`)
      yield* client.request(exchange, "b", "y", { contentType: "text/plain" })
      const second = yield* client.nextReply
      assert.strictEqual(second.content.toString(), `11:y:b:${exchange}`)
      assert.strictEqual(second.properties.contentType, "application/x-b", "the handler's options win")
      assert.strictEqual(second.properties.headers?.["x-n"], 11)
      assert.strictEqual(yield* client.call(exchange, "a", "z"), `12:z:a:${exchange}`)
    }))

  it.scopedLive("noreply, then replyTo(meta, ...) later; connected and handleReady run; terminate on exit", () =>
    Effect.gen(function*() {
      const name = unique("noreply")
      const connection = yield* serverConnection(name)
      const received = yield* Queue.unbounded<string>()
      const connected = yield* Deferred.make<RpcServer.ChannelMeta>()
      const ready = yield* Deferred.make<RpcServer.ReadyMeta>()
      const terminated = yield* Deferred.make<Process.ExitReason<never>>()
      const deferring: RpcServer.Behaviour<void, ReadonlyArray<RpcServer.RequestMeta>, "flush"> = {
        init: () => RpcServer.ok([]),
        connected: (meta, pending) => Effect.as(Deferred.succeed(connected, meta), RpcServer.noreply(pending)),
        handleReady: (meta, pending) => Effect.as(Deferred.succeed(ready, meta), RpcServer.noreply(pending)),
        handleRequest: (payload, meta, pending) =>
          Effect.as(Queue.offer(received, payload.toString()), RpcServer.noreply([...pending, meta])),
        handleInfo: (_flush, pending) =>
          Effect.forEach(pending, (meta) => RpcServer.replyTo(meta, `late:${meta.correlationId}`), { discard: true }).pipe(
            Effect.as(RpcServer.noreply([]))
          ),
        terminate: (reason) => Deferred.succeed(terminated, reason)
      }
      const server = yield* RpcServer.start(deferring, { queue: { name, options: { autoDelete: true } } }, undefined).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, connection)
      )
      const readyMeta = yield* Deferred.await(ready)
      assert.strictEqual(readyMeta.queue, name)
      assert.strictEqual(readyMeta.generation, 1)
      assert.isString(readyMeta.consumerTag)
      assert.deepStrictEqual(yield* Deferred.await(connected), { queue: name, exchange: "", generation: 1 })

      const client = yield* makeClient("noreply")
      const first = yield* client.request("", name, "one")
      const second = yield* client.request("", name, "two")
      assert.deepStrictEqual([yield* Queue.take(received), yield* Queue.take(received)], ["one", "two"])
      assert.strictEqual(yield* Queue.size(client.replies), 0, "no reply before flush")
      yield* RpcServer.send(server, "flush")
      const replies = [yield* client.nextReply, yield* client.nextReply]
      assert.deepStrictEqual(
        replies.map((r) => [r.properties.correlationId, r.content.toString()]),
        [[first, `late:${first}`], [second, `late:${second}`]]
      )
      const info = yield* queueInfo(name)
      assert.strictEqual(info.messageCount, 0, "noreply requests were acked")

      assert.deepStrictEqual(yield* RpcServer.exit(server), { _tag: "Normal" })
      assert.deepStrictEqual(yield* Deferred.await(terminated), { _tag: "Normal" })
      assert.strictEqual((yield* RpcServer.awaitReady(server).pipe(Effect.flip)).reason, "Closed")
    }))

  it.scopedLive("stop from handleRequest: the request is acked, terminate runs, the consumer goes away", () =>
    Effect.gen(function*() {
      const name = unique("stop")
      const connection = yield* serverConnection(name)
      const terminated = yield* Deferred.make<Process.ExitReason<string>>()
      const stopping: RpcServer.Behaviour<void, number, never, string> = {
        init: () => RpcServer.ok(0),
        handleRequest: (payload, _meta, n) =>
          payload.toString() === "stop" ? RpcServer.stop("asked to stop", n + 1) : RpcServer.reply("ok", n + 1),
        terminate: (reason, n) => Deferred.succeed(terminated, n === 2 ? reason : Process.stopped("bad state"))
      }
      const server = yield* RpcServer.start(stopping, { queue: { name, options: { durable: false } } }, undefined).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, connection)
      )
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("stop")
      assert.strictEqual(yield* client.call("", name, "hi"), "ok")
      yield* client.request("", name, "stop")
      const reason = yield* RpcServer.await(server)
      assert.deepStrictEqual(reason, { _tag: "Stopped", reason: "asked to stop" })
      assert.deepStrictEqual(yield* Deferred.await(terminated), reason)
      const info = yield* eventually(queueInfo(name), (q) => q.consumerCount === 0)
      assert.strictEqual(info.consumerCount, 0)
      assert.strictEqual(info.messageCount, 0, "the stop request was acked")
      assert.strictEqual((yield* server.status.get)._tag, "Stopped")
      yield* withAdminChannel((ch) => ch.deleteQueue(name))
    }))

  it.scopedLive("re-declares exchange, queue and bindings after the broker closes the connection", () =>
    Effect.gen(function*() {
      const name = unique("redeclare")
      const exchange = `${name}-x`
      const connection = yield* serverConnection(name)
      const server = yield* RpcServer.serve(
        {
          exchange: { name: exchange, options: { autoDelete: true } },
          queue: { name, options: { autoDelete: true } },
          bindings: "k"
        },
        (payload, meta) => Effect.succeed(`${payload.toString()}@${meta.generation}`)
      ).pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("redeclare")
      assert.strictEqual(yield* client.call(exchange, "k", "before"), "before@1")

      // The auto-delete queue goes away with the server's connection, and the auto-delete exchange with it.
      yield* closeConnection(name, "warren test: redeclare")
      const again = yield* server.status.changes.pipe(
        Stream.filter((status) => status._tag === "Ready" && status.generation === 2),
        Stream.runHead
      )
      assert.isTrue(Option.isSome(again))
      assert.strictEqual(yield* client.call(exchange, "k", "after"), "after@2")
    }))

  it.scopedLive("at-least-once: a request whose channel dies mid-handler is redelivered and answered once", () =>
    Effect.gen(function*() {
      const name = unique("redeliver")
      const connection = yield* serverConnection(name)
      const gate = yield* Deferred.make<void>()
      const calls = yield* Queue.unbounded<boolean>()
      const server = yield* RpcServer.serve({ queue: name }, (payload, meta) =>
        Effect.gen(function*() {
          yield* Queue.offer(calls, meta.redelivered)
          if (!meta.redelivered) yield* Deferred.await(gate)
          return `${payload.toString()} redelivered=${meta.redelivered}`
        })).pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("redeliver")
      yield* client.request("", name, "job")
      assert.isFalse(yield* Queue.take(calls), "first delivery")
      yield* closeConnection(name, "warren test: mid-handler")
      yield* server.status.changes.pipe(
        Stream.filter((status) => status._tag === "Ready" && status.generation === 2),
        Stream.runHead
      )
      yield* Deferred.succeed(gate, undefined) // the first handler finishes on a dead channel: no reply, no ack
      assert.isTrue(yield* Queue.take(calls), "redelivered after the reconnect")
      const reply = yield* client.nextReply
      assert.strictEqual(reply.content.toString(), "job redelivered=true")
      assert.strictEqual(yield* Queue.size(client.replies), 0, "answered once")
      assert.strictEqual(yield* counterValue(RpcServer.metrics.replies, name), 1)
      yield* withAdminChannel((ch) => ch.deleteQueue(name))
    }))

  it.scopedLive("re-declares the queue after the broker deletes it (consumer cancelled)", () =>
    Effect.gen(function*() {
      const name = unique("cancelled")
      const connection = yield* serverConnection(name)
      const server = yield* RpcServer.serve({ queue: name }, RpcServer.echo, { reopen: Reconnect.fromDelays(["50 millis"]) }).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, connection)
      )
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("cancelled")
      assert.strictEqual(yield* client.call("", name, "first"), "first")
      yield* deleteQueue(name)
      yield* server.status.changes.pipe(
        Stream.filter((status) => status._tag === "Ready" && status.generation === 2),
        Stream.runHead
      )
      assert.strictEqual(yield* client.call("", name, "second"), "second")
      const state = yield* connection.state.get
      assert.isTrue(state._tag === "Connected" && state.generation === 1, "the connection was not touched")
      yield* withAdminChannel((ch) => ch.deleteQueue(name))
    }))

  it.scopedLive("a request without reply_to is acked and counted, and the handler never sees it", () =>
    Effect.gen(function*() {
      const name = unique("no-reply-to")
      const connection = yield* serverConnection(name)
      const seen = yield* Ref.make<ReadonlyArray<string>>([])
      const server = yield* RpcServer.serve(
        { queue: { name, options: { autoDelete: true } } },
        (payload) => Effect.as(Ref.update(seen, (all) => [...all, payload.toString()]), payload)
      ).pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("no-reply-to")
      yield* client.publish("", name, "orphan", { correlationId: "x" })
      assert.strictEqual(yield* client.call("", name, "normal"), "normal")
      assert.deepStrictEqual(yield* Ref.get(seen), ["normal"])
      assert.strictEqual(yield* counterValue(RpcServer.metrics.noReplyTo, name), 1)
      assert.strictEqual(yield* counterValue(RpcServer.metrics.requests, name), 2)
      const info = yield* queueInfo(name)
      assert.strictEqual(info.messageCount, 0, "nothing left to redeliver")
    }))

  it.scopedLive("a failing, dying or throwing handler rejects that request (dead-lettered) and keeps serving", () =>
    Effect.gen(function*() {
      const name = unique("failures")
      const deadLetters = `${name}-dead`
      const connection = yield* serverConnection(name)
      yield* withAdminChannel((ch) => ch.assertQueue(deadLetters, { autoDelete: false }))
      const fragile: RpcServer.Behaviour<void, number> = {
        init: () => RpcServer.ok(0),
        handleRequest: (payload, _meta, n) => {
          switch (payload.toString()) {
            case "fail":
              return Effect.fail("handler failure")
            case "die":
              return Effect.die(new Error("handler defect"))
            case "throw":
              throw new Error("handler threw")
            default:
              return RpcServer.reply(`ok ${n}`, n + 1)
          }
        }
      }
      const server = yield* RpcServer.start(
        fragile,
        {
          queue: {
            name,
            options: { autoDelete: true, deadLetterExchange: "", deadLetterRoutingKey: deadLetters }
          }
        },
        undefined
      ).pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("failures")
      for (const payload of ["fail", "die", "throw"]) yield* client.request("", name, payload)
      assert.strictEqual(yield* client.call("", name, "fine"), "ok 0", "state kept across failed requests")
      assert.strictEqual(yield* counterValue(RpcServer.metrics.failures, name), 3)
      assert.isTrue(Process.isAlive(server.process))
      const dead = yield* eventually(queueInfo(deadLetters), (q) => q.messageCount === 3)
      assert.strictEqual(dead.messageCount, 3, "rejected without requeue")
      yield* withAdminChannel((ch) => ch.deleteQueue(deadLetters))
    }))

  it.scopedLive("concurrency N runs N handlers at once; prefetch holds the rest at the broker", () =>
    Effect.gen(function*() {
      const name = unique("concurrency")
      const connection = yield* serverConnection(name)
      const gate = yield* Deferred.make<void>()
      const started = yield* Queue.unbounded<string>()
      const running = yield* Ref.make(0)
      const maxRunning = yield* Ref.make(0)
      const server = yield* RpcServer.serve(
        { queue: { name, options: { autoDelete: true } }, concurrency: 3, prefetch: 3 },
        (payload) =>
          Effect.gen(function*() {
            const now = yield* Ref.updateAndGet(running, (n) => n + 1)
            yield* Ref.update(maxRunning, (max) => Math.max(max, now))
            yield* Queue.offer(started, payload.toString())
            yield* Deferred.await(gate)
            yield* Ref.update(running, (n) => n - 1)
            return payload
          })
      ).pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("concurrency")
      const ids = yield* Effect.forEach(["1", "2", "3", "4", "5"], (p) => client.request("", name, p))
      const first = yield* Effect.forEach([1, 2, 3], () => Queue.take(started))
      assert.sameMembers(first, ["1", "2", "3"])
      const held = yield* eventually(queueInfo(name), (q) => q.messageCount === 2)
      assert.strictEqual(held.messageCount, 2, "prefetch 3: two requests wait at the broker")
      assert.strictEqual(yield* Queue.size(started), 0)
      yield* Deferred.succeed(gate, undefined)
      const replies = yield* Effect.forEach(ids, () => client.nextReply)
      assert.sameMembers(replies.map((r) => r.properties.correlationId), ids)
      assert.strictEqual(yield* Ref.get(maxRunning), 3)
    }))

  it.scopedLive("a behaviour handles one request at a time, in order", () =>
    Effect.gen(function*() {
      const name = unique("sequential")
      const connection = yield* serverConnection(name)
      const running = yield* Ref.make(0)
      const maxRunning = yield* Ref.make(0)
      const order: RpcServer.Behaviour<void, ReadonlyArray<string>> = {
        init: () => RpcServer.ok([]),
        handleRequest: (payload, _meta, seen) =>
          Effect.gen(function*() {
            const now = yield* Ref.updateAndGet(running, (n) => n + 1)
            yield* Ref.update(maxRunning, (max) => Math.max(max, now))
            yield* Effect.sleep("5 millis")
            yield* Ref.update(running, (n) => n - 1)
            const next = [...seen, payload.toString()]
            return RpcServer.reply(next.join(","), next)
          })
      }
      const server = yield* RpcServer.start(order, { queue: { name, options: { autoDelete: true } }, prefetch: 10 }, undefined)
        .pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("sequential")
      yield* Effect.forEach(["a", "b", "c", "d"], (p) => client.request("", name, p))
      const replies = yield* Effect.forEach([1, 2, 3, 4], () => client.nextReply)
      assert.deepStrictEqual(replies.map((r) => r.content.toString()), ["a", "a,b", "a,b,c", "a,b,c,d"])
      assert.strictEqual(yield* Ref.get(maxRunning), 1)
    }))

  it.scopedLive("no-ack mode (Hare's) serves requests", () =>
    Effect.gen(function*() {
      const name = unique("noack")
      const connection = yield* serverConnection(name)
      const server = yield* RpcServer.serve({ queue: { name, options: { autoDelete: true } }, noAck: true }, RpcServer.echo)
        .pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("noack")
      assert.strictEqual(yield* client.call("", name, "no ack"), "no ack")
      assert.strictEqual(yield* client.call("", name, "again"), "again")
    }))

  it.scopedLive("queueType quorum declares a quorum queue (x-queue-type) and serves on it", () =>
    Effect.gen(function*() {
      const name = unique("quorum")
      yield* Effect.addFinalizer(() => Effect.ignore(deleteQueue(name)))
      const connection = yield* serverConnection(name)
      const server = yield* RpcServer.serve({ queue: name, queueType: "quorum" }, RpcServer.echo)
        .pipe(Effect.provideService(AmqpConnection.AmqpConnection, connection))
      yield* RpcServer.awaitReady(server)
      const client = yield* makeClient("quorum")
      assert.strictEqual(yield* client.call("", name, "replicated"), "replicated")
      // The broker lists it as a quorum queue.
      const listed = yield* rabbitmqctl("list_queues", "name", "type", "--formatter", "json")
      const queues = JSON.parse(listed) as ReadonlyArray<{ readonly name: string; readonly type: string }>
      assert.strictEqual(queues.find((q) => q.name === name)?.type, "quorum")
      const provide = Effect.provideService(AmqpConnection.AmqpConnection, connection)
      const unnamed = yield* Effect.flip(provide(RpcServer.serve({ queue: "", queueType: "quorum" }, RpcServer.echo)))
      assert.strictEqual(unnamed.reason, "Config")
      const exclusive = yield* Effect.flip(
        provide(RpcServer.serve({ queue: { name, options: { exclusive: true } }, queueType: "quorum" }, RpcServer.echo))
      )
      assert.strictEqual(exclusive.reason, "Config")
    }))

  it.scopedLive("rejects an invalid config with a Config error (and init refusals as Process errors)", () =>
    Effect.gen(function*() {
      const connection = yield* serverConnection(unique("config"))
      const provide = Effect.provideService(AmqpConnection.AmqpConnection, connection)
      const noExchange = yield* Effect.flip(provide(RpcServer.serve({ queue: "q", bindings: ["k"] }, RpcServer.echo)))
      assert.strictEqual(noExchange.reason, "Config")
      const badPrefetch = yield* Effect.flip(provide(RpcServer.serve({ queue: "q", prefetch: -1 }, RpcServer.echo)))
      assert.strictEqual(badPrefetch.reason, "Config")
      const notAConfig = yield* Effect.flip(
        provide(RpcServer.serve({ exchange: 42 } as unknown as RpcServer.ServerConfig, RpcServer.echo))
      )
      assert.strictEqual(notAConfig.reason, "Config")
      const refusing: RpcServer.Behaviour<void, never, never, string> = {
        init: () => RpcServer.stop("no thanks"),
        handleRequest: (_payload, _meta, state) => RpcServer.noreply(state)
      }
      const refused = yield* Effect.flip(provide(RpcServer.start(refusing, { queue: "q" }, undefined)))
      assert.strictEqual(refused._tag, "InitStopped")
    }))
})

describe("RpcServer.layer readiness", () => {
  // A connection that never connects (nothing listens on the port; the TestClock holds the retry back).
  const unreachable = (port: number) =>
    AmqpConnection.layer({ urls: `amqp://guest:guest@127.0.0.1:${port}`, connectionName: unique("unreachable") })

  const freePort = Effect.async<number>((resume) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

  it.scoped("is built only once the server consumes; awaitReady: false builds it at once", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const waiting = RpcServer.layer({ queue: unique("never") }, RpcServer.echo).pipe(Layer.provide(unreachable(port)))
      const eager = RpcServer.layer({ queue: unique("eager") }, RpcServer.echo, { awaitReady: false }).pipe(
        Layer.provide(unreachable(port))
      )
      const scope = yield* Effect.scope
      const building = yield* Effect.fork(Layer.buildWithScope(waiting, scope))
      yield* Effect.repeatN(Effect.yieldNow(), 50)
      assert.isTrue(Option.isNone(yield* building.poll))
      yield* Layer.buildWithScope(eager, scope)
    }))
})
