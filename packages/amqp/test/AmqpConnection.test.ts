import { assert, describe, it } from "@effect/vitest"
import { AmqpConnection, Reconnect } from "@warren/amqp"
import { Duration, Effect, Exit, Fiber, Option, Queue, Random, Schedule, Scope, Stream, TestClock } from "effect"
import {
  amqpUrl,
  broker,
  brokerChannelCount,
  closeConnection,
  listConnections,
  rabbitmqctl,
  startApp,
  stopApp,
  withAdminChannel
} from "./support/faults.js"
import * as net from "node:net"
import { makeProxy } from "./support/tcpProxy.js"

type State = AmqpConnection.ConnectionState

let counter = 0
const uniqueName = (label: string) => `warren-conn-${label}-${process.pid}-${++counter}`

/** Waits for the first state (current included) that satisfies `predicate`. */
const awaitState = (connection: AmqpConnection.AmqpConnectionShape, predicate: (state: State) => boolean) =>
  connection.state.changes.pipe(
    Stream.filter(predicate),
    Stream.runHead,
    Effect.map(Option.getOrThrow)
  )

const connectedWith = (generation: number) => (state: State) =>
  state._tag === "Connected" && state.generation === generation

/** Every state the connection goes through, in order, from now on. */
const recordStates = (connection: AmqpConnection.AmqpConnectionShape) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<State>()
    yield* connection.state.changes.pipe(Stream.runForEach((state) => Queue.offer(queue, state)), Effect.forkScoped)
    return queue
  })

const nextDisconnected = (states: Queue.Queue<State>) =>
  Effect.gen(function*() {
    while (true) {
      const state = yield* Queue.take(states)
      if (state._tag === "Disconnected") return state
      if (state._tag === "Closed") return yield* Effect.dieMessage("closed while waiting for Disconnected")
    }
  })

const retryMillis = (state: State) =>
  state._tag === "Disconnected" ? Option.map(state.retryIn, Duration.toMillis) : Option.none()

/** Polls `effect` until it returns `expected` (about 20 tries), then returns the last value seen. */
const eventually = <A, E>(effect: Effect.Effect<A, E>, expected: A): Effect.Effect<A, E> =>
  effect.pipe(
    Effect.flatMap((value) => value === expected ? Effect.succeed(value) : Effect.fail(Option.some(value))),
    Effect.mapError((error) => Option.isOption(error) ? error : Option.none<A>()),
    Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 20, while: Option.isSome }),
    Effect.catchAll((last) => Option.isSome(last) ? Effect.succeed(last.value) : effect)
  )

/** A port with nothing listening (connection refused). */
const refusedUrl = Effect.map(makeProxy("amqp://guest:guest@127.0.0.1:5672"), (proxy) => proxy.url)

describe("AmqpConnection (real broker)", () => {
  it.scopedLive("connects, hands out channels and confirm channels, and closes cleanly with its scope", () =>
    Effect.gen(function*() {
      const name = uniqueName("basic")
      const scope = yield* Scope.make()
      const connection = yield* AmqpConnection.make({ urls: amqpUrl(), connectionName: name }).pipe(Scope.extend(scope))
      yield* connection.awaitConnected
      const state = yield* connection.state.get
      assert.strictEqual(state._tag, "Connected")
      if (state._tag === "Connected") {
        assert.strictEqual(state.generation, 1)
        assert.notInclude(state.url, ":guest@", "the password is redacted")
      }
      const channel = yield* connection.openChannel().pipe(Scope.extend(scope))
      yield* Effect.promise(() => channel.checkExchange("amq.direct"))
      const confirm = yield* connection.openChannel({ confirm: true }).pipe(Scope.extend(scope))
      const queue = yield* Effect.promise(() => confirm.assertQueue("", { exclusive: true }))
      confirm.sendToQueue(queue.queue, Buffer.from("x"))
      yield* Effect.promise(() => confirm.waitForConfirms())
      if (broker().kind === "local") {
        assert.include((yield* listConnections).map((row) => row.connectionName), name)
        assert.strictEqual(yield* brokerChannelCount(name), 2)
      }

      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* connection.state.get, { _tag: "Closed" })
      const afterClose = yield* Effect.either(connection.awaitConnected)
      assert.isTrue(afterClose._tag === "Left" && afterClose.left.reason === "Closed")
      const reopen = yield* Effect.either(Effect.scoped(connection.openChannel()))
      assert.isTrue(reopen._tag === "Left" && reopen.left.reason === "Closed")
      if (broker().kind === "local") {
        const names = yield* eventually(
          Effect.map(listConnections, (rows) => rows.some((row) => row.connectionName === name)),
          false
        )
        assert.isFalse(names, "the broker no longer lists the connection")
      }
    }))

  it.scopedLive("tries the URLs in order and connects to the first that answers", () =>
    Effect.gen(function*() {
      const refused = yield* refusedUrl
      const connection = yield* AmqpConnection.make({ urls: [refused, amqpUrl()], connectionName: uniqueName("urls") })
      yield* connection.awaitConnected
      const state = yield* connection.state.get
      assert.isTrue(state._tag === "Connected" && state.url === amqpUrl().replace(":guest@", ":***@"))
    }))

  it.scopedLive("reconnects after the broker closes the connection; old channels report ConnectionLost", () =>
    Effect.gen(function*() {
      const name = uniqueName("forced")
      const connection = yield* AmqpConnection.make({
        urls: amqpUrl(),
        connectionName: name,
        reconnect: Reconnect.fromDelays(["50 millis"])
      })
      const old = yield* connection.openChannel()
      const lost = yield* Effect.fork(AmqpConnection.channelLost(old))
      assert.strictEqual(yield* closeConnection(name, "warren test: forced close"), 1)
      const error = yield* Fiber.join(lost).pipe(Effect.flip)
      assert.strictEqual(error.reason, "ConnectionLost")
      assert.match(error.message, /CONNECTION_FORCED|forced close/)
      yield* awaitState(connection, connectedWith(2))
      const channel = yield* connection.openChannel()
      yield* Effect.promise(() => channel.checkExchange("amq.direct"))
    }))

  it.scopedLive("a channel error (404 on publish) closes that channel only", () =>
    Effect.gen(function*() {
      const name = uniqueName("channel-error")
      const exchange = `warren-conn-doomed-${process.pid}`
      const connection = yield* AmqpConnection.make({ urls: amqpUrl(), connectionName: name })
      yield* withAdminChannel((ch) => ch.assertExchange(exchange, "direct", { autoDelete: false }))
      const channel = yield* connection.openChannel()
      const bystander = yield* connection.openChannel()
      const lost = yield* Effect.fork(AmqpConnection.channelLost(channel))
      yield* withAdminChannel((ch) => ch.deleteExchange(exchange))
      channel.publish(exchange, "", Buffer.from("x"))
      const error = yield* Fiber.join(lost).pipe(Effect.flip)
      assert.strictEqual(error.reason, "ChannelLost")
      assert.match(error.message, /404/)
      assert.isTrue(connectedWith(1)(yield* connection.state.get), "still the first connection")
      yield* Effect.promise(() => bystander.checkExchange("amq.direct"))
      const fresh = yield* connection.openChannel()
      yield* Effect.promise(() => fresh.checkExchange("amq.direct"))
      assert.isTrue(connectedWith(1)(yield* connection.state.get))
    }))

  it.scopedLive("a caller that gives up while the channel is opening leaks no channel", () =>
    Effect.gen(function*() {
      const name = uniqueName("abandon")
      const connection = yield* AmqpConnection.make({ urls: amqpUrl(), connectionName: name })
      yield* connection.awaitConnected
      // Interrupt callers while channel.open is in flight, many times over.
      // Interrupt callers at different points: waiting for the state, while channel.open is in flight, just
      // after the channel opened.
      for (let i = 0; i < 60; i++) {
        const opening = yield* Effect.fork(Effect.scoped(Effect.zipRight(connection.openChannel(), Effect.never)))
        for (let j = 0; j < i; j++) yield* Effect.yieldNow()
        yield* Fiber.interrupt(opening)
      }
      const kept = yield* connection.openChannel()
      yield* Effect.promise(() => kept.checkExchange("amq.direct"))
      if (broker().kind === "local") assert.strictEqual(yield* eventually(brokerChannelCount(name), 1), 1)
    }))

  it.scopedLive("heartbeat and frameMax reach the broker (connection.tune-ok)", () =>
    Effect.gen(function*() {
      const name = uniqueName("tune")
      const connection = yield* AmqpConnection.make({
        urls: amqpUrl(),
        connectionName: name,
        heartbeat: "3 seconds",
        frameMax: 65536
      })
      yield* connection.awaitConnected
      if (broker().kind !== "local") return
      const out = yield* rabbitmqctl("list_connections", "timeout", "frame_max", "client_properties", "--formatter", "json")
      const rows = JSON.parse(out) as ReadonlyArray<{
        readonly timeout: number
        readonly frame_max: number
        readonly client_properties: ReadonlyArray<readonly [string, string, unknown]>
      }>
      const row = rows.find((r) => r.client_properties.some(([key, , value]) => key === "connection_name" && value === name))
      assert.isDefined(row)
      assert.strictEqual(row?.timeout, 3)
      assert.strictEqual(row?.frame_max, 65536)
    }))

  it.scopedLive("rejects invalid options with a Config error", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(AmqpConnection.make({ urls: "http://localhost" }))
      assert.strictEqual(bad.reason, "Config")
      const empty = yield* Effect.flip(AmqpConnection.make({ urls: [] as unknown as [string] }))
      assert.strictEqual(empty.reason, "Config")
      const frame = yield* Effect.flip(AmqpConnection.make({ urls: amqpUrl(), frameMax: 10 }))
      assert.strictEqual(frame.reason, "Config")
    }))
})

describe.sequential("AmqpConnection across a broker outage (stop_app / start_app)", () => {
  it.scopedLive("reconnects after an outage; a waiter blocked during it gets a channel; a waiter that timed out leaks none", () =>
    Effect.gen(function*() {
      const name = uniqueName("outage")
      const connection = yield* AmqpConnection.make({
        urls: amqpUrl(),
        connectionName: name,
        reconnect: Schedule.spaced("200 millis")
      })
      yield* connection.awaitConnected
      yield* stopApp
      yield* awaitState(connection, (state) => state._tag === "Disconnected")

      const impatient = yield* Effect.exit(Effect.scoped(connection.openChannel().pipe(Effect.timeout("300 millis"))))
      assert.isTrue(Exit.isFailure(impatient), "the impatient waiter timed out")
      const patient = yield* Effect.fork(connection.openChannel())

      yield* startApp
      const channel = yield* Fiber.join(patient)
      yield* Effect.promise(() => channel.checkExchange("amq.direct"))
      const state = yield* connection.state.get
      assert.isTrue(state._tag === "Connected" && state.generation === 2)
      if (broker().kind === "local") assert.strictEqual(yield* eventually(brokerChannelCount(name), 1), 1)
    }).pipe(Effect.ensuring(Effect.ignore(startApp))))
})

describe("AmqpConnection reconnect timing (TestClock)", () => {
  it.scoped("Hare's list backoff: 100, 1000, 1000, then back to 100 after a successful connect", () =>
    Effect.gen(function*() {
      const proxy = yield* makeProxy(amqpUrl())
      const connection = yield* AmqpConnection.make({
        urls: proxy.url,
        connectionName: uniqueName("list-backoff"),
        reconnect: Reconnect.fromDelays(["100 millis", "1 second"])
      })
      const states = yield* recordStates(connection)
      assert.deepStrictEqual(retryMillis(yield* nextDisconnected(states)), Option.some(100))
      yield* TestClock.adjust("100 millis")
      assert.deepStrictEqual(retryMillis(yield* nextDisconnected(states)), Option.some(1000))
      yield* TestClock.adjust("999 millis")
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      assert.isTrue(Option.isNone(yield* Queue.poll(states)), "no attempt before the delay is over")
      yield* TestClock.adjust("1 millis")
      const third = yield* nextDisconnected(states)
      assert.deepStrictEqual(retryMillis(third), Option.some(1000))
      assert.isTrue(third._tag === "Disconnected" && third.error.reason === "Connect")

      yield* proxy.start
      yield* TestClock.adjust("1 second")
      yield* awaitState(connection, connectedWith(1))
      yield* proxy.cut
      const lost = yield* nextDisconnected(states)
      assert.isTrue(lost._tag === "Disconnected" && lost.error.reason === "ConnectionLost")
      assert.deepStrictEqual(retryMillis(lost), Option.some(100), "the schedule restarted after the success")
      yield* TestClock.adjust("100 millis")
      yield* awaitState(connection, connectedWith(2))
    }))

  it.scoped("the default policy: exponential from 100 ms, jittered (Random), capped", () =>
    Effect.gen(function*() {
      const refused = yield* refusedUrl
      const delays = (random: number, policy: Reconnect.Policy, count: number) =>
        Effect.scoped(Effect.gen(function*() {
          const connection = yield* AmqpConnection.make({ urls: refused, reconnect: policy })
          const states = yield* recordStates(connection)
          const seen: Array<number> = []
          for (let i = 0; i < count; i++) {
            const delay = Option.getOrThrow(retryMillis(yield* nextDisconnected(states)))
            seen.push(Math.round(delay))
            yield* TestClock.adjust(delay)
          }
          return seen
        })).pipe(Effect.withRandom(Random.fixed([random])))
      assert.deepStrictEqual(yield* delays(0.5, Reconnect.defaultPolicy, 5), [100, 200, 400, 800, 1600])
      assert.deepStrictEqual(yield* delays(0, Reconnect.defaultPolicy, 3), [80, 160, 320])
      assert.deepStrictEqual(
        yield* delays(1, Reconnect.exponential({ max: "300 millis" }), 4),
        [120, 240, 300, 300],
        "jitter never pushes a delay over the cap"
      )
      assert.deepStrictEqual(
        yield* delays(0.5, Reconnect.hareDefault, 7),
        [0, 10, 100, 1000, 5000, 5000, 5000]
      )
    }))

  it.scoped("a broker that accepts TCP but never answers: the attempt times out and its socket is closed", () =>
    Effect.gen(function*() {
      const accepted = yield* Queue.unbounded<net.Socket>()
      const server = net.createServer((socket) => {
        socket.on("error", () => {})
        socket.resume() // read (and ignore) the protocol header, so that the client's close is seen
        Queue.unsafeOffer(accepted, socket)
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.sync(() => server.close())
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      const connection = yield* AmqpConnection.make({
        urls: `amqp://guest:guest@127.0.0.1:${port}`,
        connectTimeout: "300 millis",
        reconnect: Reconnect.fromDelays(["1 hour"])
      })
      const states = yield* recordStates(connection)
      const socket = yield* Queue.take(accepted)
      const socketClosed = Effect.async<void>((resume) => {
        if (socket.destroyed) resume(Effect.void)
        else socket.once("close", () => resume(Effect.void))
      })
      yield* TestClock.adjust("300 millis")
      const failed = yield* nextDisconnected(states)
      assert.isTrue(failed._tag === "Disconnected" && /\(HandshakeTimeout\).*within 300ms/.test(failed.error.message))
      assert.deepStrictEqual(retryMillis(failed), Option.some(3_600_000))
      // The abandoned attempt's socket is destroyed (by amqplib's own real-time socket timeout).
      yield* socketClosed
    }))

  it.scoped("when the schedule ends the state is Closed and waiters fail", () =>
    Effect.gen(function*() {
      const refused = yield* refusedUrl
      const connection = yield* AmqpConnection.make({
        urls: refused,
        reconnect: Reconnect.limit(Reconnect.fromDelays(["1 second"]), 2)
      })
      const waiter = yield* Effect.fork(Effect.scoped(connection.openChannel()))
      const states = yield* recordStates(connection)
      yield* nextDisconnected(states)
      yield* TestClock.adjust("1 second")
      yield* nextDisconnected(states)
      yield* TestClock.adjust("1 second")
      yield* awaitState(connection, (state) => state._tag === "Closed")
      const error = yield* Fiber.join(waiter).pipe(Effect.flip)
      assert.strictEqual(error.reason, "Closed")
      assert.match(error.message, /gave up/)
      const late = yield* Effect.flip(connection.awaitConnected)
      assert.strictEqual(late.reason, "Closed")
    }))
})
