import { assert, describe, it } from "@effect/vitest"
import { AmqpConnection, Reconnect, RpcClient, RpcServer } from "@warren/amqp"
import { Process } from "@warren/process"
import amqp from "amqplib"
import type * as Amqp from "amqplib"
import {
  Clock,
  Duration,
  Effect,
  Either,
  Fiber,
  Metric,
  Option,
  Queue,
  Schedule,
  Stream,
  TestClock,
  Tracer
} from "effect"
import { amqpUrl, closeConnection, deleteQueue, rabbitmqctl, withAdminChannel } from "./support/faults.js"

// ---------------------------------------------------------------------------------------------------------------
// Helpers: a connection per test, plain amqplib RPC servers (interop), event recording

let counter = 0
const unique = (label: string) => `warren-rpcc-${label}-${process.pid}-${++counter}`

/** A connection for the test's scope, provided to `effect`. */
const withConnection = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    AmqpConnection.make({
      urls: amqpUrl(),
      connectionName: unique(label),
      reconnect: Reconnect.fromDelays(["50 millis"])
    }),
    (connection) => Effect.provideService(effect, AmqpConnection.AmqpConnection, connection)
  )

interface Server {
  readonly queue: string
  /** Every request the server received, in order. */
  readonly received: Array<Amqp.ConsumeMessage>
  /** Requests as they arrive. */
  readonly arrivals: Queue.Queue<Amqp.ConsumeMessage>
  /** Answers a request the reply_to / correlation_id way. */
  readonly reply: (request: Amqp.ConsumeMessage, body: Buffer | string) => void
  readonly channel: Amqp.Channel
}

type Mode = "echo" | "hold"

/**
 * A plain amqplib RPC server on its own connection: consumes `queue` (declared exclusive, optionally bound to an
 * exchange) and answers each request on the default exchange with routing key = reply_to and the same
 * correlation_id: `echo` answers at once with the request body, `hold` never answers by itself.
 */
const startServer = (options: {
  readonly mode: Mode
  readonly queue?: string
  readonly queueOptions?: Amqp.Options.AssertQueue
  readonly bind?: { readonly exchange: string; readonly type?: string; readonly routingKey: string }
}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const connection = await amqp.connect(amqpUrl(), {
        noDelay: true,
        clientProperties: { connection_name: unique("server") }
      })
      connection.on("error", () => {})
      const channel = await connection.createChannel()
      channel.on("error", () => {})
      const { queue } = await channel.assertQueue(
        options.queue ?? unique("queue"),
        options.queueOptions ?? { exclusive: true, autoDelete: true }
      )
      if (options.bind !== undefined) {
        await channel.assertExchange(options.bind.exchange, options.bind.type ?? "direct", { autoDelete: true })
        await channel.bindQueue(queue, options.bind.exchange, options.bind.routingKey)
      }
      const received: Array<Amqp.ConsumeMessage> = []
      const arrivals = Effect.runSync(Queue.unbounded<Amqp.ConsumeMessage>())
      const reply = (request: Amqp.ConsumeMessage, body: Buffer | string) => {
        channel.publish("", request.properties.replyTo, Buffer.isBuffer(body) ? body : Buffer.from(body), {
          correlationId: request.properties.correlationId
        })
      }
      await channel.consume(queue, (message) => {
        if (message === null) return
        received.push(message)
        Queue.unsafeOffer(arrivals, message)
        if (options.mode === "echo") reply(message, message.content)
      }, { noAck: true })
      const server: Server = { queue, received, arrivals, reply, channel }
      return { server, connection }
    }),
    ({ connection }) => Effect.promise(() => connection.close().catch(() => undefined))
  ).pipe(Effect.map(({ server }) => server))

type Event =
  | { readonly _tag: "connected"; readonly meta: RpcClient.Meta }
  | { readonly _tag: "ready"; readonly meta: RpcClient.Meta }
  | { readonly _tag: "info"; readonly message: string }
  | { readonly _tag: "terminate"; readonly reason: Process.ExitReason<string> }

/** Callbacks that record every event into a queue; `handleRequest` is optional. */
const recording = (
  events: Queue.Queue<Event>,
  handleRequest?: RpcClient.Callbacks<void, number, string, string>["handleRequest"]
): RpcClient.Callbacks<void, number, string, string> => ({
  init: () => Process.ok(0),
  connected: (meta, state) => Effect.as(Queue.offer(events, { _tag: "connected", meta }), Process.noreply(state)),
  handleReady: (meta, state) => Effect.as(Queue.offer(events, { _tag: "ready", meta }), Process.noreply(state)),
  handleInfo: (message, state) => Effect.as(Queue.offer(events, { _tag: "info", message }), Process.noreply(state + 1)),
  handleRequest,
  terminate: (reason) => Queue.offer(events, { _tag: "terminate", reason })
})

/** The next event of the given kind (earlier events of other kinds are skipped). */
const next = <T extends Event["_tag"]>(events: Queue.Queue<Event>, tag: T) =>
  Effect.gen(function*() {
    for (;;) {
      const event = yield* Queue.take(events)
      if (event._tag === tag) return event as Extract<Event, { readonly _tag: T }>
    }
  })

interface HasState {
  readonly state: RpcClient.Client["state"]
}

const awaitState = (client: HasState, tag: RpcClient.ClientState["_tag"]) =>
  client.state.changes.pipe(Stream.filter((state) => state._tag === tag), Stream.runHead, Effect.map(Option.getOrThrow))

const readyMeta = (client: HasState) =>
  Effect.map(awaitState(client, "Ready"), (state) => (state._tag === "Ready" ? state.meta : assert.fail("not ready")))

/** Whether the broker lists `queue` (exclusive queues cannot be probed from another connection). */
const queueExists = (queue: string) =>
  Effect.map(rabbitmqctl("list_queues", "name"), (out) => out.split("\n").map((line) => line.trim()).includes(queue))

/** Re-runs `effect` (every `every`, at most 50 times) until its value satisfies `done`; returns the last value. */
const eventually = <A, E>(
  effect: Effect.Effect<A, E>,
  done: (a: A) => boolean,
  every: Duration.DurationInput = "100 millis"
) =>
  effect.pipe(
    Effect.flatMap((value) => done(value) ? Effect.succeed(value) : Effect.fail(Option.some(value))),
    Effect.mapError((error) => Option.isOption(error) ? error : Option.none<A>()),
    Effect.retry({ schedule: Schedule.spaced(every), times: 50, while: Option.isSome }),
    Effect.catchAll((last) => Option.isSome(last) ? Effect.succeed(last.value) : Effect.orDie(effect))
  )

/** Whether `queue` is gone, allowing the broker a moment to delete it after its channel closed. */
const queueGone = (queue: string) =>
  Effect.map(eventually(queueExists(queue), (exists) => !exists), (exists) => !exists)

const text = (buffer: Buffer) => buffer.toString("utf8")

/** Callbacks whose `handleRequest` passes every request on: requests then go through the process's mailbox. */
const passThrough: RpcClient.Callbacks<void, number> = {
  init: () => Process.ok(0),
  handleRequest: (_payload, _routingKey, _options, state) => RpcClient.proceed(state + 1)
}

/** The two request paths: direct (no handleRequest) and through the process (handleRequest). */
const paths = [
  { label: "direct", start: (options: RpcClient.Options) => RpcClient.make(options) },
  {
    label: "through handleRequest",
    start: (options: RpcClient.Options) => Effect.orDie(RpcClient.start(passThrough, undefined, options))
  }
] as const

/** An echo server and a client (on `path`) whose channel was just lost: it reconnects after `delay`. */
const echoWithChannelDown = (path: (typeof paths)[number], delay: Duration.DurationInput) =>
  Effect.gen(function*() {
    const server = yield* startServer({ mode: "echo" })
    const client = yield* path.start({ timeout: "20 seconds", reconnect: Reconnect.fromDelays([delay]) })
    const meta = yield* readyMeta(client)
    yield* deleteQueue(meta.replyQueue)
    yield* awaitState(client, "Reconnecting")
    return { server, client }
  })

// ---------------------------------------------------------------------------------------------------------------

describe("RpcClient: the original's tests (echo)", () => {
  it.scopedLive("connected then handleReady run with the reply queue and the request exchange", () =>
    withConnection(
      "meta",
      Effect.gen(function*() {
        const events = yield* Queue.unbounded<Event>()
        const exchange = unique("ex")
        yield* RpcClient.start(recording(events), undefined, {
          exchange: { name: exchange, type: "topic", options: { autoDelete: true } }
        })
        const first = yield* Queue.take(events)
        const second = yield* Queue.take(events)
        assert.strictEqual(first._tag, "connected")
        assert.strictEqual(second._tag, "ready")
        if (first._tag !== "connected" || second._tag !== "ready") return
        assert.match(first.meta.replyQueue, /^amq\.gen-/)
        assert.deepStrictEqual(second.meta, first.meta)
        assert.strictEqual(first.meta.requestExchange.name, exchange)
        assert.strictEqual(first.meta.requestExchange.type, "topic")
        assert.isTrue(yield* queueExists(first.meta.replyQueue))
        yield* withAdminChannel((channel) => channel.checkExchange(exchange))
      })
    ))

  it.scopedLive("handleInfo gets the messages sent to the client", () =>
    withConnection(
      "info",
      Effect.gen(function*() {
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(recording(events), undefined, {})
        yield* client.send("hello")
        yield* Process.send(client.ref, "again")
        assert.deepStrictEqual(yield* next(events, "info"), { _tag: "info", message: "hello" })
        assert.deepStrictEqual(yield* next(events, "info"), { _tag: "info", message: "again" })
      })
    ))

  it.scopedLive("two concurrent requests, one of them modified by handleRequest", () =>
    withConnection(
      "modify",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(
          recording(events, (payload, routingKey, options, state) =>
            text(payload) === "modify me"
              ? RpcClient.proceedWith("modified", routingKey, { ...options, headers: { modified: true } }, state + 1)
              : RpcClient.proceed(state + 1)),
          undefined,
          {}
        )
        const [plain, modified] = yield* Effect.all([
          client.request("plain", server.queue),
          client.request("modify me", server.queue)
        ], { concurrency: 2 })
        assert.strictEqual(text(plain), "plain")
        assert.strictEqual(text(modified), "modified")
        assert.sameMembers(server.received.map((message) => text(message.content)), ["plain", "modified"])
        const rewritten = server.received.find((message) => text(message.content) === "modified")
        assert.deepStrictEqual(rewritten?.properties.headers, { modified: true })
      })
    ))

  it.scopedLive("a reply from handleRequest answers at once and publishes nothing", () =>
    withConnection(
      "cached",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(
          recording(events, (payload, _routingKey, _options, state) =>
            text(payload) === "cached?" ? Process.reply("from cache", state) : RpcClient.proceed(state)),
          undefined,
          {}
        )
        assert.strictEqual(text(yield* client.request("cached?", server.queue)), "from cache")
        assert.strictEqual(text(yield* client.request("live", server.queue)), "live")
        assert.deepStrictEqual(
          server.received.map((message) =>
            text(message.content)
          ),
          ["live"]
        )
        const stats = yield* client.stats
        assert.strictEqual(stats.requests, 2)
        assert.strictEqual(stats.published, 1)
      })
    ))

  it.scopedLive("out-of-order replies reach the right callers", () =>
    withConnection(
      "order",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "hold" })
        const client = yield* RpcClient.make({})
        const calls = yield* Effect.forkScoped(Effect.all(
          ["a", "b", "c"].map((payload) => client.request(payload, server.queue)),
          { concurrency: "unbounded" }
        ))
        const requests = [
          yield* Queue.take(server.arrivals),
          yield* Queue.take(server.arrivals),
          yield* Queue.take(server.arrivals)
        ]
        for (const request of requests.reverse()) server.reply(request, `re:${text(request.content)}`)
        assert.deepStrictEqual((yield* Fiber.join(calls)).map(text), ["re:a", "re:b", "re:c"])
      })
    ))

  it.scopedLive("each request has its own correlation id, reply_to is the reply queue, other options pass through", () =>
    withConnection(
      "props",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const client = yield* RpcClient.make({})
        const meta = yield* readyMeta(client)
        // The caller's own reply_to / correlation_id are overridden.
        const sneaky: Amqp.Options.Publish = { replyTo: "elsewhere", correlationId: "mine" }
        yield* client.request("one", server.queue, sneaky)
        yield* client.request("two", server.queue, {
          headers: { "x-trace": "t1" },
          expiration: "60000",
          priority: 3,
          contentType: "text/plain",
          contentEncoding: "utf8",
          persistent: true,
          messageId: "m-2",
          type: "greeting",
          appId: "warren-test",
          timestamp: 1234567
        })
        const [one, two] = server.received
        assert.isDefined(one)
        assert.isDefined(two)
        if (one === undefined || two === undefined) return
        assert.strictEqual(one.properties.replyTo, meta.replyQueue)
        assert.strictEqual(two.properties.replyTo, meta.replyQueue)
        assert.notStrictEqual(one.properties.correlationId, "mine")
        assert.notStrictEqual(one.properties.correlationId, two.properties.correlationId)
        assert.deepStrictEqual(two.properties.headers, { "x-trace": "t1" })
        assert.strictEqual(two.properties.expiration, "60000")
        assert.strictEqual(two.properties.priority, 3)
        assert.strictEqual(two.properties.contentType, "text/plain")
        assert.strictEqual(two.properties.contentEncoding, "utf8")
        assert.strictEqual(two.properties.deliveryMode, 2)
        assert.strictEqual(two.properties.messageId, "m-2")
        assert.strictEqual(two.properties.type, "greeting")
        assert.strictEqual(two.properties.appId, "warren-test")
        assert.strictEqual(two.properties.timestamp, 1234567)
      })
    ))

  it.scopedLive("declarations run one at a time: reply queue, exchange, consume", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const connection = yield* AmqpConnection.make({ urls: amqpUrl(), connectionName: unique("order") })
      const tracked = new Set(["assertQueue", "assertExchange", "checkExchange", "consume"])
      // The real channel, with its declaration methods recorded (start and end of each call).
      const recordingConnection: AmqpConnection.AmqpConnectionShape = {
        ...connection,
        openChannel: ((options?: { readonly confirm?: boolean }) =>
          Effect.map(connection.openChannel(options), (channel) =>
            new Proxy(channel, {
              get: (target, property, receiver) => {
                const value: unknown = Reflect.get(target, property, receiver)
                if (
                  typeof property !== "string" || !tracked.has(property) || typeof value !== "function"
                ) return value
                return (...args: Array<unknown>) => {
                  calls.push(`${property}:start`)
                  const result = Reflect.apply(value, target, args) as Promise<unknown>
                  return result.then((ok) => {
                    calls.push(`${property}:end`)
                    return ok
                  })
                }
              }
            }))) as AmqpConnection.AmqpConnectionShape["openChannel"]
      }
      const exchange = unique("ex")
      const client = yield* RpcClient.make({ exchange: { name: exchange, options: { autoDelete: true } } }).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, recordingConnection)
      )
      yield* awaitState(client, "Ready")
      assert.deepStrictEqual(calls, [
        "assertQueue:start",
        "assertQueue:end",
        "assertExchange:start",
        "assertExchange:end",
        "consume:start",
        "consume:end"
      ])
    }))
})

describe("RpcClient: the original's tests (timeout, stop, config, init)", () => {
  it.scopedLive("a 1 ms timeout gives a typed RpcTimeout", () =>
    withConnection(
      "timeout",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "hold" })
        const client = yield* RpcClient.make({})
        yield* awaitState(client, "Ready")
        const error = yield* Effect.flip(client.request("slow", server.queue, {}, "1 millis"))
        assert.strictEqual(error._tag, "RpcTimeout")
        if (error._tag === "RpcTimeout") {
          assert.strictEqual(Duration.toMillis(error.timeout), 1)
          assert.strictEqual(error.routingKey, server.queue)
        }
        assert.strictEqual((yield* client.stats).timeouts, 1)
      })
    ))

  it.scopedLive("a stop reply answers the caller, then the client stops, runs terminate and closes its channel", () =>
    withConnection(
      "stop-reply",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(
          recording(
            events,
            (payload, _routingKey, _options, state) =>
              text(payload) === "quit" ? Process.stopReply("asked to quit", "bye", state) : RpcClient.proceed(state)
          ),
          undefined,
          {}
        )
        const meta = (yield* next(events, "ready")).meta
        assert.strictEqual(text(yield* client.request("hi", server.queue)), "hi")
        assert.strictEqual(text(yield* client.request("quit", server.queue)), "bye")
        assert.deepStrictEqual(yield* client.await, Process.stopped("asked to quit"))
        assert.deepStrictEqual(yield* next(events, "terminate"), {
          _tag: "terminate",
          reason: Process.stopped("asked to quit")
        })
        assert.isTrue(yield* queueGone(meta.replyQueue), "the channel closed, so its auto-delete reply queue is gone")
        const after = yield* Effect.flip(client.request("late", server.queue))
        assert.strictEqual(after._tag, "RpcClientStopped")
        assert.deepStrictEqual(
          server.received.map((message) => text(message.content)),
          ["hi"]
        )
      })
    ))

  it.scopedLive("an empty exchange config means the default exchange (routing key = queue name)", () =>
    withConnection(
      "default-ex",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        for (const exchange of [undefined, {}, { name: "" }]) {
          const client = yield* RpcClient.make(exchange === undefined ? {} : { exchange })
          const meta = yield* readyMeta(client)
          assert.strictEqual(meta.requestExchange.name, "")
          assert.strictEqual(text(yield* client.request("via default", server.queue)), "via default")
        }
      })
    ))

  it.scopedLive("a malformed config fails start with AmqpError (reason Config)", () =>
    withConnection(
      "config",
      Effect.gen(function*() {
        const bad: ReadonlyArray<unknown> = [
          { exchange: "not an object" },
          { exchange: { name: 42 } },
          { exchange: { options: { durable: "yes" } } },
          { maxInFlight: 0 },
          { replyMode: "carrier pigeon" },
          { timeout: -5 },
          { timeout: "soon" },
          { reconnect: "often" }
        ]
        for (const options of bad) {
          const error = yield* Effect.flip(RpcClient.make(options as RpcClient.Options))
          assert.isTrue(error._tag === "AmqpError" && error.reason === "Config", JSON.stringify(options))
          assert.match(error.message, /invalid RPC client options/)
        }
      })
    ))

  it.scopedLive("init ignore / stop: start fails, no channel is opened and terminate does not run", () =>
    Effect.gen(function*() {
      let opened = 0
      let terminated = 0
      const connection = yield* AmqpConnection.make({ urls: amqpUrl(), connectionName: unique("init") })
      const counting: AmqpConnection.AmqpConnectionShape = {
        ...connection,
        openChannel: ((options?: { readonly confirm?: boolean }) => {
          opened++
          return connection.openChannel(options)
        }) as AmqpConnection.AmqpConnectionShape["openChannel"]
      }
      const callbacks = (
        result: Process.InitResult<number, string>
      ): RpcClient.Callbacks<void, number, never, string> => ({
        init: () => result,
        terminate: () => {
          terminated++
        }
      })
      const ignored = yield* Effect.flip(
        RpcClient.start(callbacks(Process.ignore), undefined, {}).pipe(
          Effect.provideService(AmqpConnection.AmqpConnection, counting)
        )
      )
      assert.strictEqual(ignored._tag, "InitIgnored")
      const stopped = yield* Effect.flip(
        RpcClient.start(callbacks(Process.stop("no thanks")), undefined, {}).pipe(
          Effect.provideService(AmqpConnection.AmqpConnection, counting)
        )
      )
      assert.strictEqual(stopped._tag, "InitStopped")
      if (stopped._tag === "InitStopped") assert.deepStrictEqual(stopped.reason, Process.stopped("no thanks"))
      assert.strictEqual(opened, 0)
      assert.strictEqual(terminated, 0)
    }))
})

/** Records the socket writes of the connection `channel` belongs to: one entry per write, its number of chunks. */
const recordSocketWrites = (channel: Amqp.Channel): Array<number> => {
  const writes: Array<number> = []
  const socket: unknown = Reflect.get(channel.connection, "stream")
  if (typeof socket !== "object" || socket === null) return assert.fail("no socket behind the channel")
  const write: unknown = Reflect.get(socket, "_write")
  const writev: unknown = Reflect.get(socket, "_writev")
  if (typeof write !== "function" || typeof writev !== "function") return assert.fail("not a net.Socket")
  Reflect.set(socket, "_write", (...args: Array<unknown>) => {
    writes.push(1)
    return Reflect.apply(write, socket, args)
  })
  Reflect.set(socket, "_writev", (chunks: Array<unknown>, ...rest: Array<unknown>) => {
    writes.push(chunks.length)
    return Reflect.apply(writev, socket, [chunks, ...rest])
  })
  return writes
}

describe("RpcClient: beyond the original", () => {
  it.scopedLive("requests issued in the same turn leave in one socket write", () =>
    withConnection(
      "coalesce",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const client = yield* RpcClient.make({ timeout: "20 seconds" })
        yield* readyMeta(client)
        const connection = yield* AmqpConnection.AmqpConnection
        const probe = yield* connection.openChannel()
        const writes = recordSocketWrites(probe)
        const replies = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => `r${i}`),
          (body) => Effect.map(client.request(body, server.queue), text),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(replies, Array.from({ length: 20 }, (_, i) => `r${i}`))
        assert.deepStrictEqual(writes, [20], "the 20 publishes went out in one writev")
      })
    ))

  it.scopedLive("an unroutable mandatory request fails at once with RpcUnroutable", () =>
    withConnection(
      "unroutable",
      Effect.gen(function*() {
        const client = yield* RpcClient.make({ timeout: "20 seconds" })
        const error = yield* Effect.flip(client.request("nobody", unique("no-such-queue"), { mandatory: true }))
        assert.strictEqual(error._tag, "RpcUnroutable")
        if (error._tag === "RpcUnroutable") {
          assert.strictEqual(error.replyCode, 312)
          assert.strictEqual(error.exchange, "")
        }
        assert.strictEqual((yield* client.stats).returned, 1)
        assert.strictEqual((yield* client.stats).inFlight, 0)
      })
    ))

  it.scopedLive("publisher confirms: confirmed requests work, a nacked request fails with RpcNacked", () =>
    withConnection(
      "confirm",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        // A queue that refuses every message: the broker nacks publishes routed to it.
        const full = unique("full")
        yield* withAdminChannel((channel) =>
          channel.assertQueue(full, {
            autoDelete: false,
            arguments: { "x-max-length": 0, "x-overflow": "reject-publish" }
          })
        )
        yield* Effect.addFinalizer(() => Effect.ignore(withAdminChannel((channel) => channel.deleteQueue(full))))
        const client = yield* RpcClient.make({ confirm: true, timeout: "20 seconds" })
        assert.strictEqual(text(yield* client.request("confirmed", server.queue)), "confirmed")
        const error = yield* Effect.flip(client.request("refused", full))
        assert.strictEqual(error._tag, "RpcNacked")
        assert.strictEqual((yield* client.stats).nacked, 1)
      })
    ))

  it.scopedLive("maxInFlight: callers beyond the limit wait for a slot", () =>
    withConnection(
      "limit",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "hold" })
        const client = yield* RpcClient.make({ maxInFlight: 2, timeout: "20 seconds" })
        yield* awaitState(client, "Ready")
        const calls = yield* Effect.forkScoped(Effect.all(
          [1, 2, 3, 4, 5].map((n) => client.request(String(n), server.queue)),
          { concurrency: "unbounded" }
        ))
        const first = yield* Queue.take(server.arrivals)
        const second = yield* Queue.take(server.arrivals)
        // Three callers are parked by the client; the server has seen two requests only.
        const parked = yield* eventually(client.stats, (stats) => stats.waiting === 3, "10 millis")
        assert.strictEqual(parked.inFlight, 2)
        assert.strictEqual(server.received.length, 2)
        server.reply(first, "r1")
        const third = yield* Queue.take(server.arrivals)
        server.reply(second, "r2")
        server.reply(third, "r3")
        const fourth = yield* Queue.take(server.arrivals)
        const fifth = yield* Queue.take(server.arrivals)
        server.reply(fourth, "r4")
        server.reply(fifth, "r5")
        assert.deepStrictEqual((yield* Fiber.join(calls)).map(text), ["r1", "r2", "r3", "r4", "r5"])
      })
    ))

  it.scopedLive("an interrupted caller's request is forgotten when its finalizer makes another request", () =>
    withConnection(
      "interrupt-finalizer",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "hold" })
        const client = yield* RpcClient.make({ timeout: "20 seconds" })
        const caller = yield* Effect.fork(
          client.request("first", server.queue).pipe(
            Effect.ensuring(Effect.ignore(client.request("second", server.queue)))
          )
        )
        const first = yield* Queue.take(server.arrivals)
        yield* Fiber.interruptFork(caller)
        const second = yield* Queue.take(server.arrivals)
        assert.strictEqual(text(second.content), "second")
        assert.strictEqual((yield* client.stats).inFlight, 1, "the interrupted first request is no longer in flight")
        server.reply(second, "done")
        yield* Fiber.await(caller)
        server.reply(first, "too late")
        const stats = yield* eventually(client.stats, (stats) => stats.lateReplies === 1, "10 millis")
        assert.strictEqual(stats.lateReplies, 1)
        assert.strictEqual(stats.inFlight, 0)
      })
    ))

  it.scopedLive("one caller, two clients: interrupted in the second client's request, only that request is forgotten", () =>
    withConnection(
      "interrupt-two-clients",
      Effect.gen(function*() {
        const echo = yield* startServer({ mode: "echo" })
        const server = yield* startServer({ mode: "hold" })
        const first = yield* RpcClient.make({ name: "first", timeout: "20 seconds" })
        const second = yield* RpcClient.make({ name: "second", timeout: "20 seconds" })
        const parked = yield* Effect.fork(first.request("keeps waiting", server.queue))
        const waiting = yield* Queue.take(server.arrivals)
        const caller = yield* Effect.fork(Effect.gen(function*() {
          assert.strictEqual(text(yield* first.request("answered", echo.queue)), "answered")
          return yield* second.request("interrupted", server.queue)
        }))
        const interrupted = yield* Queue.take(server.arrivals)
        assert.strictEqual(text(interrupted.content), "interrupted")
        yield* Fiber.interrupt(caller)
        // The abandonment reaches the client's process in mailbox order.
        const after = yield* eventually(second.stats, (stats) => stats.inFlight === 0, "10 millis")
        assert.strictEqual(after.inFlight, 0, "the interrupted request is forgotten")
        assert.strictEqual((yield* first.stats).inFlight, 1, "the other client's caller still waits")
        server.reply(waiting, "late but wanted")
        assert.strictEqual(text(yield* Fiber.join(parked)), "late but wanted")
      })
    ))

  it.scopedLive("direct reply-to: replies come on amq.rabbitmq.reply-to, no reply queue is declared", () =>
    withConnection(
      "direct",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const client = yield* RpcClient.make({ replyMode: "direct" })
        const meta = yield* readyMeta(client)
        assert.strictEqual(meta.replyQueue, RpcClient.DIRECT_REPLY_TO)
        const replies = yield* Effect.all(
          Array.from({ length: 20 }, (_, i) => client.request(`d${i}`, server.queue)),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(replies.map(text), Array.from({ length: 20 }, (_, i) => `d${i}`))
        assert.match(String(server.received[0]?.properties.replyTo), /^amq\.rabbitmq\.reply-to/)
      })
    ))

  for (const path of paths) {
    it.scopedLive(`an interrupted caller leaves nothing behind; its late reply is dropped and counted (${path.label})`, () =>
      withConnection(
        "interrupt",
        Effect.gen(function*() {
          const server = yield* startServer({ mode: "hold" })
          const client = yield* path.start({ timeout: "20 seconds" })
          const caller = yield* Effect.fork(client.request("abandoned", server.queue))
          const request = yield* Queue.take(server.arrivals)
          yield* Fiber.interrupt(caller)
          // The abandonment is handled before the next request (synchronously, or in mailbox order).
          const follow = yield* Effect.fork(client.request("follow", server.queue))
          const second = yield* Queue.take(server.arrivals)
          const stats = yield* client.stats
          assert.strictEqual(stats.inFlight, 1, "only the follow-up is in flight")
          server.reply(request, "too late")
          server.reply(second, "ok")
          assert.strictEqual(text(yield* Fiber.join(follow)), "ok")
          assert.strictEqual((yield* client.stats).lateReplies, 1)
        })
      ))

    it.scopedLive(`a caller that gives up while the channel is down is never published (${path.label})`, () =>
      withConnection(
        "give-up-down",
        Effect.gen(function*() {
          const { client, server } = yield* echoWithChannelDown(path, "500 millis")
          const gaveUp = yield* Effect.either(client.request("gave up", server.queue).pipe(Effect.timeout("50 millis")))
          assert.isTrue(Either.isLeft(gaveUp) && gaveUp.left._tag === "TimeoutException")
          const parked = yield* eventually(client.stats, (stats) => stats.waiting === 0, "10 millis")
          assert.strictEqual(parked.waiting, 0, "the abandoned request is no longer parked")
          yield* awaitState(client, "Ready")
          assert.strictEqual(text(yield* client.request("after", server.queue)), "after")
          assert.deepStrictEqual(server.received.map((message) => text(message.content)), ["after"])
        })
      ))

    it.scopedLive(`1,000 concurrent requests are all answered and correctly correlated (${path.label})`, () =>
      withConnection(
        "thousand",
        Effect.gen(function*() {
          const server = yield* startServer({ mode: "echo" })
          const client = yield* path.start({ timeout: "30 seconds" })
          const replies = yield* Effect.forEach(
            Array.from({ length: 1000 }, (_, i) => i),
            (i) => Effect.map(client.request(`request-${i}`, server.queue), (reply) => [i, text(reply)] as const),
            { concurrency: "unbounded" }
          )
          for (const [i, reply] of replies) assert.strictEqual(reply, `request-${i}`)
          const stats = yield* client.stats
          assert.strictEqual(stats.replies, 1000)
          assert.strictEqual(stats.inFlight, 0)
          assert.strictEqual(new Set(server.received.map((message) => message.properties.correlationId)).size, 1000)
        })
      ))

    it.scopedLive(`one request Effect run many times at once: each run is its own request (${path.label})`, () =>
      withConnection(
        "rerun",
        Effect.gen(function*() {
          const server = yield* startServer({ mode: "echo" })
          // maxInFlight 2 parks some runs, so both the direct publish and the parked path are exercised.
          const client = yield* path.start({ timeout: "10 seconds", maxInFlight: 2 })
          yield* awaitState(client, "Ready")
          // An Effect is a description: running the same one again must make a new request (the CLI's load test
          // runs one `request` Effect --count times).
          const send = client.request("same", server.queue)
          const replies = yield* Effect.forEach(Array.from({ length: 40 }), () => send, { concurrency: 4 })
          assert.deepStrictEqual(replies.map(text), Array.from({ length: 40 }, () => "same"))
          assert.strictEqual(new Set(server.received.map((message) => message.properties.correlationId)).size, 40)
          const stats = yield* client.stats
          assert.strictEqual(stats.replies, 40)
          assert.strictEqual(stats.lateReplies, 0)
          assert.strictEqual(stats.inFlight, 0)
        })
      ))

    it.scopedLive(`one request Effect run many times at once: each run is its own request (${path.label})`, () =>
      withConnection(
        "rerun",
        Effect.gen(function*() {
          const server = yield* startServer({ mode: "echo" })
          // maxInFlight 2 parks some runs, so both the direct publish and the parked path are exercised.
          const client = yield* path.start({ timeout: "10 seconds", maxInFlight: 2 })
          yield* awaitState(client, "Ready")
          // An Effect is a description: running the same one again must make a new request (the CLI's load test
          // runs one `request` Effect --count times).
          const send = client.request("same", server.queue)
          const replies = yield* Effect.forEach(Array.from({ length: 40 }), () => send, { concurrency: 4 })
          assert.deepStrictEqual(replies.map(text), Array.from({ length: 40 }, () => "same"))
          assert.strictEqual(new Set(server.received.map((message) => message.properties.correlationId)).size, 40)
          const stats = yield* client.stats
          assert.strictEqual(stats.replies, 40)
          assert.strictEqual(stats.lateReplies, 0)
          assert.strictEqual(stats.inFlight, 0)
        })
      ))

    it.scopedLive(`a request made while the channel is down waits and is answered (${path.label})`, () =>
      withConnection(
        "wait-down",
        Effect.gen(function*() {
          const { client, server } = yield* echoWithChannelDown(path, "300 millis")
          assert.strictEqual(text(yield* client.request("patient", server.queue)), "patient")
          assert.strictEqual((yield* client.stats).sessions, 2)
        })
      ))
  }

  it.scopedLive("a modified request times out too", () =>
    withConnection(
      "modified-timeout",
      Effect.gen(function*() {
        const silent = yield* startServer({ mode: "hold" })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(
          recording(
            events,
            (_payload, _routingKey, options, state) => RpcClient.proceedWith("rewritten", silent.queue, options, state)
          ),
          undefined,
          {}
        )
        const error = yield* Effect.flip(client.request("original", "anywhere", {}, "300 millis"))
        assert.strictEqual(error._tag, "RpcTimeout")
        assert.strictEqual(text((yield* Queue.take(silent.arrivals)).content), "rewritten")
      })
    ))

  it.scopedLive("the reply queue deleted (server cancel): requests in flight fail at once, the client reopens", () =>
    withConnection(
      "cancel",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "hold" })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(recording(events), undefined, { timeout: "30 seconds" })
        const first = (yield* next(events, "ready")).meta
        const caller = yield* Effect.fork(client.request("doomed", server.queue))
        yield* Queue.take(server.arrivals)
        yield* deleteQueue(first.replyQueue)
        const error = yield* Effect.flip(Fiber.join(caller))
        assert.strictEqual(error._tag, "RpcChannelLost")
        const second = (yield* next(events, "connected")).meta
        assert.notStrictEqual(second.replyQueue, first.replyQueue)
        const echo = yield* startServer({ mode: "echo" })
        assert.strictEqual(text(yield* client.request("after", echo.queue)), "after")
        assert.strictEqual((yield* client.stats).channelLost, 1)
      })
    ))

  it.scopedLive("a publish to a deleted exchange (404 closes the channel): in-flight requests fail, the exchange is re-declared", () =>
    withConnection(
      "404",
      Effect.gen(function*() {
        const exchange = unique("ex")
        const server = yield* startServer({ mode: "hold", bind: { exchange, routingKey: "work" } })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(recording(events), undefined, {
          exchange: { name: exchange, options: { autoDelete: true } },
          timeout: "30 seconds"
        })
        yield* next(events, "ready")
        const waiting = yield* Effect.fork(client.request("in flight", "work"))
        yield* Queue.take(server.arrivals)
        yield* withAdminChannel((channel) => channel.deleteExchange(exchange))
        const doomed = yield* Effect.flip(client.request("to nowhere", "work"))
        assert.strictEqual(doomed._tag, "RpcChannelLost")
        if (doomed._tag === "RpcChannelLost") assert.match(doomed.message, /404/)
        assert.strictEqual((yield* Effect.flip(Fiber.join(waiting)))._tag, "RpcChannelLost")
        // Reopened: the exchange exists again (declared by the client); bind the server again and call.
        yield* next(events, "ready")
        yield* Effect.promise(() => server.channel.bindQueue(server.queue, exchange, "work"))
        const again = yield* Effect.fork(client.request("again", "work"))
        server.reply(yield* Queue.take(server.arrivals), "answered")
        assert.strictEqual(text(yield* Fiber.join(again)), "answered")
      })
    ))

  it.scopedLive("graceful stop: refuses new requests, waits for the replies in flight, then terminates", () =>
    withConnection(
      "graceful",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "hold" })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(recording(events), undefined, {
          timeout: "30 seconds",
          drainTimeout: "30 seconds"
        })
        const meta = (yield* next(events, "ready")).meta
        const calls = yield* Effect.fork(
          Effect.all([client.request("a", server.queue), client.request("b", server.queue)], { concurrency: 2 })
        )
        const a = yield* Queue.take(server.arrivals)
        const b = yield* Queue.take(server.arrivals)
        const stopping = yield* Effect.fork(client.stop())
        yield* awaitState(client, "Stopped")
        const refused = yield* Effect.flip(client.request("c", server.queue))
        assert.strictEqual(refused._tag, "RpcClientStopped")
        assert.isTrue(Option.isNone(yield* Fiber.poll(stopping)), "still draining")
        server.reply(a, "A")
        server.reply(b, "B")
        assert.deepStrictEqual((yield* Fiber.join(calls)).map(text), ["A", "B"])
        assert.deepStrictEqual(yield* Fiber.join(stopping), Process.normal)
        assert.deepStrictEqual(yield* next(events, "terminate"), { _tag: "terminate", reason: Process.normal })
        assert.isTrue(yield* queueGone(meta.replyQueue))
      })
    ))

  it.scopedLive("graceful stop gives up on replies after drainTimeout", () =>
    withConnection(
      "drain-timeout",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "hold" })
        const client = yield* RpcClient.make({ timeout: "30 seconds", drainTimeout: "200 millis" })
        const call = yield* Effect.fork(client.request("never answered", server.queue))
        yield* Queue.take(server.arrivals)
        assert.deepStrictEqual(yield* client.stop(), Process.normal)
        const error = yield* Effect.flip(Fiber.join(call))
        assert.strictEqual(error._tag, "RpcClientStopped")
      })
    ))

  it.scopedLive("the broker closes the connection: in-flight requests fail, the client reconnects and serves again", () =>
    Effect.gen(function*() {
      const name = unique("forced")
      const connection = yield* AmqpConnection.make({
        urls: amqpUrl(),
        connectionName: name,
        reconnect: Reconnect.fromDelays(["50 millis"])
      })
      const provide = Effect.provideService(AmqpConnection.AmqpConnection, connection)
      const server = yield* startServer({ mode: "hold" })
      const events = yield* Queue.unbounded<Event>()
      const client = yield* provide(RpcClient.start(recording(events), undefined, { timeout: "30 seconds" }))
      const first = (yield* next(events, "ready")).meta
      const caller = yield* Effect.fork(client.request("in flight", server.queue))
      yield* Queue.take(server.arrivals)
      yield* closeConnection(name, "warren test: forced close")
      const error = yield* Effect.flip(Fiber.join(caller))
      assert.strictEqual(error._tag, "RpcChannelLost")
      if (error._tag === "RpcChannelLost") assert.strictEqual(error.cause.reason, "ConnectionLost")
      const second = (yield* next(events, "ready")).meta
      assert.notStrictEqual(second.replyQueue, first.replyQueue)
      const after = yield* Effect.fork(client.request("after", server.queue))
      server.reply(yield* Queue.take(server.arrivals), "served")
      assert.strictEqual(text(yield* Fiber.join(after)), "served")
    }))

  it.scopedLive("metrics per client name, and a span per request when a tracer is installed", () =>
    withConnection(
      "observe",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const silent = yield* startServer({ mode: "hold" })
        const native = yield* Effect.tracer
        const spans: Array<Tracer.Span> = []
        const recording = Tracer.make({
          span: (name, parent, context, links, startTime, kind, options) => {
            const span = native.span(name, parent, context, links, startTime, kind, options)
            spans.push(span)
            return span
          },
          context: (f, fiber) => native.context(f, fiber)
        })
        const name = unique("observed")
        const client = yield* RpcClient.make({ name }).pipe(Effect.withTracer(recording))
        const quiet = yield* RpcClient.make({ name: unique("quiet"), spans: false }).pipe(Effect.withTracer(recording))
        yield* client.request("a", server.queue).pipe(Effect.withTracer(recording))
        yield* Effect.flip(client.request("b", silent.queue, {}, "100 millis")).pipe(Effect.withTracer(recording))
        yield* quiet.request("c", server.queue).pipe(Effect.withTracer(recording))
        const requestSpans = spans.filter((span) => span.name === "RpcClient.request")
        assert.strictEqual(requestSpans.length, 2, "one span per request of the traced client, none for spans: false")
        assert.strictEqual(requestSpans[0]?.kind, "client")
        assert.strictEqual(requestSpans[0]?.attributes.get("messaging.rabbitmq.destination.routing_key"), server.queue)
        assert.strictEqual(requestSpans[1]?.status._tag, "Ended")

        // The late reply to the timed-out request is dropped and counted.
        silent.reply(yield* Queue.take(silent.arrivals), "late")
        yield* eventually(client.stats, (stats) => stats.lateReplies === 1, "10 millis")
        const snapshot = yield* Metric.snapshot
        const value = (metric: string) => {
          const pair = snapshot.find((pair) =>
            pair.metricKey.name === metric &&
            pair.metricKey.tags.some((tag) => tag.key === "client" && tag.value === name)
          )
          const state: unknown = pair?.metricState
          if (typeof state === "object" && state !== null && "count" in state) return Number(state.count)
          if (typeof state === "object" && state !== null && "value" in state) return Number(state.value)
          return undefined
        }
        assert.strictEqual(value("warren_rpc_client_requests_total"), 2)
        assert.strictEqual(value("warren_rpc_client_published_total"), 2)
        assert.strictEqual(value("warren_rpc_client_replies_total"), 1)
        assert.strictEqual(value("warren_rpc_client_timeouts_total"), 1)
        assert.strictEqual(value("warren_rpc_client_late_replies_total"), 1)
        assert.strictEqual(value("warren_rpc_client_in_flight"), 0)
      })
    ))

  it.scopedLive("interoperates with warren's RpcServer (exchange, binding, direct reply-to and queue modes)", () =>
    withConnection(
      "interop",
      Effect.gen(function*() {
        const exchange = unique("interop-ex")
        const server = yield* RpcServer.serve(
          {
            exchange: { name: exchange, type: "direct", options: { autoDelete: true } },
            queue: { name: unique("interop-q"), options: { exclusive: true } },
            bindings: ["upper"]
          },
          (payload) => Effect.succeed(Buffer.from(payload).toString("utf8").toUpperCase())
        )
        yield* RpcServer.awaitReady(server)
        for (const replyMode of ["queue", "direct"] as const) {
          const client = yield* RpcClient.make({
            exchange: { name: exchange, options: { autoDelete: true } },
            replyMode
          })
          const replies = yield* Effect.all(
            ["a", "b", "c"].map((payload) => client.request(`${replyMode}-${payload}`, "upper")),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(
            replies.map(text),
            ["A", "B", "C"].map((payload) => `${replyMode.toUpperCase()}-${payload}`)
          )
        }
      })
    ))

  it.scopedLive("the simple path: a Layer and RpcClient.request", () =>
    Effect.gen(function*() {
      const server = yield* startServer({ mode: "echo" })
      const reply = yield* RpcClient.request("layered", server.queue).pipe(
        Effect.provide(RpcClient.layer({ name: "layered" })),
        Effect.provide(AmqpConnection.layer({ urls: amqpUrl(), connectionName: unique("layer") }))
      )
      assert.strictEqual(text(reply), "layered")
    }))
})

describe("RpcClient: timeouts and backoff on the TestClock (real broker)", () => {
  for (const path of paths) {
    it.scoped(`a request nobody answers fails with RpcTimeout exactly when its timeout passes (${path.label})`, () =>
      withConnection(
        "testclock-timeout",
        Effect.gen(function*() {
          const server = yield* startServer({ mode: "hold" })
          const client = yield* path.start({})
          const call = yield* Effect.fork(client.request("anyone?", server.queue))
          yield* Queue.take(server.arrivals)
          yield* TestClock.adjust("4999 millis")
          assert.isTrue(Option.isNone(yield* Fiber.poll(call)), "no timeout before 5 s")
          yield* TestClock.adjust("1 millis")
          const error = yield* Effect.flip(Fiber.join(call))
          assert.strictEqual(error._tag, "RpcTimeout")
          if (error._tag === "RpcTimeout") assert.strictEqual(Duration.toMillis(error.timeout), 5000)
          // The abandoned request leaves the table (at once, or once the mailbox gets to it).
          const stats = yield* eventually(client.stats, (stats) => stats.inFlight === 0, "10 millis").pipe(
            Effect.timeout("5 seconds"),
            Effect.withClock(Clock.make())
          )
          assert.strictEqual(stats.inFlight, 0)
          assert.strictEqual(stats.timeouts, 1)
        })
      ))
  }

  it.scoped("after a channel loss the client waits out the reconnect delay; a request made meanwhile waits and succeeds", () =>
    withConnection(
      "testclock-backoff",
      Effect.gen(function*() {
        const server = yield* startServer({ mode: "echo" })
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(recording(events), undefined, {
          reconnect: Reconnect.fromDelays(["10 seconds", "20 seconds"])
        })
        const first = (yield* next(events, "ready")).meta
        yield* deleteQueue(first.replyQueue)
        const reconnecting = yield* awaitState(client, "Reconnecting")
        assert.isTrue(reconnecting._tag === "Reconnecting" && Duration.toMillis(reconnecting.retryIn) === 10_000)
        const call = yield* Effect.fork(client.request("patient", server.queue, {}, "60 seconds"))
        yield* Effect.repeat(client.stats, { until: (stats) => stats.waiting === 1 })
        yield* TestClock.adjust("9999 millis")
        assert.strictEqual((yield* client.state.get)._tag, "Reconnecting")
        assert.strictEqual((yield* client.stats).sessions, 1)
        yield* TestClock.adjust("1 millis")
        const second = (yield* next(events, "ready")).meta
        assert.notStrictEqual(second.replyQueue, first.replyQueue)
        assert.strictEqual(text(yield* Fiber.join(call)), "patient")
        // The schedule restarted after the successful setup: the next loss waits 10 s again.
        yield* deleteQueue(second.replyQueue)
        const again = yield* client.state.changes.pipe(
          Stream.filter((state) => state._tag === "Reconnecting"),
          Stream.runHead,
          Effect.map(Option.getOrThrow)
        )
        assert.isTrue(again._tag === "Reconnecting" && Duration.toMillis(again.retryIn) === 10_000)
      })
    ))

  it.scoped("a reconnect schedule that ends stops the client (crashed with the last error)", () =>
    withConnection(
      "testclock-giveup",
      Effect.gen(function*() {
        const events = yield* Queue.unbounded<Event>()
        const client = yield* RpcClient.start(recording(events), undefined, {
          reconnect: Reconnect.limit(Reconnect.fromDelays(["1 second"]), 0)
        })
        const meta = (yield* next(events, "ready")).meta
        yield* deleteQueue(meta.replyQueue)
        const reason = yield* client.await
        assert.strictEqual(reason._tag, "Crashed")
        const terminated = yield* next(events, "terminate")
        assert.strictEqual(terminated.reason._tag, "Crashed")
        const error = yield* Effect.flip(client.request("x", "y"))
        assert.strictEqual(error._tag, "RpcClientStopped")
        assert.match(error.message, /cancelled the reply consumer/)
      })
    ))
})
