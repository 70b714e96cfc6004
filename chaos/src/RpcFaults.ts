/**
 * Broker faults under RPC load: broker-side `close_connection`s, a `stop_app`/`start_app` outage, and `kill -9` of
 * the node followed by a restart, against warren's RpcClient (echo load) and RpcServer (at-least-once, durable
 * queue, persistent requests from a plain amqplib publisher with publisher confirms) at the same time.
 *
 * Promised and checked: every client request settles (a reply or a typed `RequestError`) within its timeout plus a
 * margin, no reply is wrong, the client's pending table (`stats.inFlight` + `stats.waiting`) is empty at the end,
 * and client and server serve again within 5 s of the broker's return; every request the broker confirmed is
 * handled by the server (none lost), and the server never sends more replies to a request than it got deliveries of
 * it (a redelivered request is answered again on the wire; warren's RpcClient settles a request once and drops the
 * second reply as late).
 */
import { AmqpConnection, Reconnect, RpcClient, RpcServer } from "@warren/amqp"
import amqp from "amqplib"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { type ChaosBroker, closeConnections } from "./Broker.js"
import type { Row } from "./Report.js"

/** Sizes of the run: the full one (`npm run chaos`) and the bounded one (`npm test`). */
export interface RpcScale {
  readonly closes: number
  /** How long the stop_app outage lasts (the kill -9 outage lasts as long as the node's restart). */
  readonly outageSeconds: number
  /** Load between faults. */
  readonly steadySeconds: number
  readonly callers: number
  readonly gapMs: number
  readonly timeoutMs: number
  /**
   * `close_connection` of the client's and the server's connections by name (3 rabbitmqctl runs, ~2 s each on a
   * busy machine), or one `close_all_connections` (the publisher's connection too; quicker, for `npm test`).
   */
  readonly targetedCloses: boolean
}

export const fullRpcScale: RpcScale = {
  closes: 5,
  outageSeconds: 5,
  steadySeconds: 3,
  callers: 16,
  gapMs: 2,
  timeoutMs: 3_000,
  targetedCloses: true
}
export const boundedRpcScale: RpcScale = {
  closes: 2,
  outageSeconds: 1,
  steadySeconds: 0.5,
  callers: 4,
  gapMs: 10,
  timeoutMs: 3_000,
  targetedCloses: false
}

/** A request settles at most this long after its timeout (a busy 2-core machine included). */
export const SETTLE_MARGIN_MS = 2_000
/** Client and server serve again within this long after the broker is back. */
export const RECOVERY_BOUND_MS = 5_000

const ECHO_QUEUE = "chaos-echo"
const ALO_QUEUE = "chaos-alo"
const ALO_REPLIES = "chaos-alo-replies"
const TYPED = new Set(["RpcTimeout", "RpcChannelLost", "RpcUnroutable", "RpcNacked", "RpcClientStopped"])
/** Reconnect policy of the suite's connections, client and server: the 5 s recovery promise needs a cap below it. */
const policy = () => Reconnect.exponential({ base: "100 millis", max: "1 second" })

interface Outcome {
  readonly t0: number
  readonly t1: number
  /** "ok", "wrong", a RequestError tag, or "untyped: ..." */
  readonly result: string
}

interface Phase {
  readonly name: string
  readonly start: number
  end: number
  /** When the broker was back (outages). */
  back?: number
  serverBack?: number
}

const delay = (ms: number) => Effect.sleep(`${ms} millis`)

/** The plain amqplib publisher of at-least-once requests: persistent, confirmed, reconnecting. */
const startPublisher = (url: string, gapMs: number) => {
  const confirmed = new Map<number, number>()
  const replies = new Map<string, number>()
  let published = 0
  let running = true
  const loop = (async () => {
    let next = 0
    while (running) {
      let connection: amqp.ChannelModel | undefined
      try {
        connection = await amqp.connect(url, { clientProperties: { connection_name: "chaos-publisher" } })
        connection.on("error", () => {})
        const closed = new Promise<never>((_, reject) => connection!.once("close", () => reject(new Error("closed"))))
        closed.catch(() => {})
        const channel = await connection.createConfirmChannel()
        channel.on("error", () => {})
        await channel.assertQueue(ALO_QUEUE, { durable: true })
        await channel.assertQueue(ALO_REPLIES, { durable: true })
        await channel.consume(ALO_REPLIES, (message) => {
          const id = message?.properties.correlationId as string | undefined
          if (id !== undefined) replies.set(id, (replies.get(id) ?? 0) + 1)
        }, { noAck: true })
        while (running) {
          const id = next++
          published++
          await Promise.race([
            closed,
            new Promise<void>((resolve, reject) =>
              channel.publish("", ALO_QUEUE, Buffer.from(String(id)), {
                persistent: true,
                correlationId: `alo-${id}`,
                replyTo: ALO_REPLIES
              }, (error: unknown) => error === null || error === undefined ? resolve() : reject(error))
            )
          ])
          confirmed.set(id, Date.now())
          await new Promise((resolve) => setTimeout(resolve, gapMs))
        }
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 200))
      } finally {
        await connection?.close().catch(() => undefined)
      }
    }
  })()
  return {
    confirmed,
    replies,
    published: () => published,
    stop: async () => {
      running = false
      await loop
    }
  }
}

/** Runs the RPC faults against `broker` (which it kills and restarts); one row per fault and side. */
export const runRpcFaults = (
  broker: ChaosBroker,
  scale: RpcScale,
  log: (line: string) => void = () => {}
): Effect.Effect<Array<Row>> =>
  Effect.gen(function*() {
    // The server side: its own connection, an echo server for the client load and an at-least-once server.
    const serverConnection = yield* AmqpConnection.make({
      urls: broker.url,
      connectionName: "chaos-server",
      reconnect: policy()
    })
    const handled = new Map<number, number>()
    const echo = yield* RpcServer.serve(
      { queue: { name: ECHO_QUEUE, options: { durable: true } }, concurrency: 4 },
      RpcServer.echo,
      {
        reopen: policy()
      }
    ).pipe(Effect.provideService(AmqpConnection.AmqpConnection, serverConnection))
    const alo = yield* RpcServer.serve(
      { queue: { name: ALO_QUEUE, options: { durable: true } }, concurrency: 4 },
      (payload) =>
        Effect.sync(() => {
          const id = Number(payload.toString("utf8"))
          handled.set(id, (handled.get(id) ?? 0) + 1)
          return payload
        }).pipe(Effect.delay("2 millis")),
      { reopen: policy() }
    ).pipe(Effect.provideService(AmqpConnection.AmqpConnection, serverConnection))
    yield* RpcServer.awaitReady(echo).pipe(Effect.orDie)
    yield* RpcServer.awaitReady(alo).pipe(Effect.orDie)

    // The client side.
    const clientConnection = yield* AmqpConnection.make({
      urls: broker.url,
      connectionName: "chaos-client",
      reconnect: policy()
    })
    const client = yield* RpcClient.make({
      name: "chaos-client",
      timeout: `${scale.timeoutMs} millis`,
      reconnect: policy()
    }).pipe(
      Effect.provideService(AmqpConnection.AmqpConnection, clientConnection),
      Effect.orDie
    )
    const outcomes: Array<Outcome> = []
    const pending = new Set<string>()
    let running = true
    const caller = (f: number) =>
      Effect.gen(function*() {
        let n = 0
        while (running) {
          const payload = `${f}-${n++}`
          const t0 = Date.now()
          pending.add(payload)
          const exit = yield* Effect.exit(client.request(payload, ECHO_QUEUE))
          pending.delete(payload)
          const result = exit._tag === "Success"
            ? exit.value.toString("utf8") === payload ? "ok" : "wrong"
            : Option.match(Cause.failureOption(exit.cause), {
              onNone: () => `untyped: ${Cause.pretty(exit.cause).split("\n")[0]}`,
              onSome: (error) => TYPED.has(error._tag) ? error._tag : `untyped: ${error._tag}`
            })
          outcomes.push({ t0, t1: Date.now(), result })
          yield* delay(scale.gapMs)
        }
      })
    const callers = yield* Effect.forEach(Array.from({ length: scale.callers }, (_, f) => f), (f) =>
      Effect.fork(caller(f)))
    const publisher = startPublisher(broker.url, scale.gapMs * 5)
    yield* Effect.addFinalizer(() =>
      Effect.promise(publisher.stop)
    )

    const phases: Array<Phase> = []
    const phase = (name: string) => {
      const last = phases[phases.length - 1]
      if (last !== undefined) last.end = Date.now()
      const p: Phase = { name, start: Date.now(), end: Number.POSITIVE_INFINITY }
      phases.push(p)
      log(`rpc: ${name}`)
      return p
    }
    const serverReady = Effect.gen(function*() {
      const a = yield* SubscriptionRef.get(echo.status)
      const b = yield* SubscriptionRef.get(alo.status)
      return a._tag === "Ready" && b._tag === "Ready"
    })
    /** After the broker's return: notes when both servers are ready and waits (bounded) for the client to serve. */
    const awaitRecovery = (p: Phase) =>
      Effect.gen(function*() {
        const back = Date.now()
        p.back = back
        const until = back + 20_000
        while (Date.now() < until) {
          if (p.serverBack === undefined && (yield* serverReady)) p.serverBack = Date.now()
          if (p.serverBack !== undefined && outcomes.some((o) => o.result === "ok" && o.t1 > back)) return
          yield* delay(50)
        }
      })

    const ctl = (...args: Array<string>) => Effect.promise(() => broker.ctl(...args))
    phase("warm-up")
    yield* delay(scale.steadySeconds * 1_000)

    phase(`${scale.closes} close_connection`)
    for (let i = 0; i < scale.closes; i++) {
      if (scale.targetedCloses) {
        const closed = yield* Effect.promise(() => closeConnections(broker, ["chaos-client", "chaos-server"]))
        log(`rpc: close_connection ${i + 1}: ${closed} connections closed`)
      } else {
        yield* ctl("close_all_connections", "closed by warren chaos")
      }
      yield* delay(scale.steadySeconds * 1_000)
    }

    const stopApp = phase("stop_app / start_app")
    yield* ctl("stop_app")
    yield* delay(scale.outageSeconds * 1_000)
    yield* ctl("start_app")
    yield* awaitRecovery(stopApp)
    yield* delay(scale.steadySeconds * 1_000)

    const kill = phase("kill -9, restart")
    yield* Effect.promise(broker.kill)
    yield* Effect.promise(broker.restart)
    yield* awaitRecovery(kill)
    yield* delay(scale.steadySeconds * 1_000)
    phase("end")

    // Stop the load; every caller must finish within a request's timeout plus the margin.
    running = false
    const joined = yield* Fiber.joinAll(callers).pipe(
      Effect.timeout(`${scale.timeoutMs + SETTLE_MARGIN_MS + 1_000} millis`),
      Effect.option
    )
    const hung = pending.size
    const stats = yield* client.stats
    yield* Effect.promise(publisher.stop)
    // Every confirmed request must be handled: wait (bounded) for the server to catch up.
    const drainUntil = Date.now() + 20_000
    const lost = () => [...publisher.confirmed.keys()].filter((id) => !handled.has(id))
    while (lost().length > 0 && Date.now() < drainUntil) yield* delay(100)
    yield* delay(500) // late duplicate replies, if any

    const rows: Array<Row> = []
    for (const p of phases.filter((p) => p.name !== "end")) {
      const inPhase = outcomes.filter((o) => o.t0 >= p.start && o.t0 < p.end)
      const byResult = new Map<string, number>()
      for (const o of inPhase) byResult.set(o.result, (byResult.get(o.result) ?? 0) + 1)
      const maxSettle = inPhase.reduce((max, o) => Math.max(max, o.t1 - o.t0), 0)
      const problems: Array<string> = []
      const wrong = byResult.get("wrong") ?? 0
      if (wrong > 0) problems.push(`${wrong} wrong replies`)
      const untyped = [...byResult.keys()].filter((k) => k.startsWith("untyped"))
      if (untyped.length > 0) problems.push(`untyped errors: ${untyped.join(", ")}`)
      if (maxSettle > scale.timeoutMs + SETTLE_MARGIN_MS) problems.push(`a request settled after ${maxSettle} ms`)
      if ((byResult.get("ok") ?? 0) === 0) problems.push("no request succeeded")
      let recovery = ""
      if (p.back !== undefined) {
        const first = outcomes.filter((o) => o.result === "ok" && o.t1 > p.back!).reduce(
          (min, o) => Math.min(min, o.t1),
          Number.POSITIVE_INFINITY
        )
        const clientMs = first - p.back
        recovery = `; client serves ${Number.isFinite(clientMs) ? `${clientMs} ms` : "never"} after the broker's return`
        if (!(clientMs <= RECOVERY_BOUND_MS)) problems.push(`client served again only after ${clientMs} ms`)
      }
      if (p.name === "end" || phases[phases.length - 2] === p) {
        if (hung > 0 || Option.isNone(joined)) problems.push(`${hung} requests never settled`)
        if (stats.inFlight + stats.waiting > 0) {
          problems.push(`pending table not empty: ${stats.inFlight} in flight, ${stats.waiting} waiting`)
        }
      }
      rows.push({
        fault: `rpc client: ${p.name}`,
        seconds: ((Number.isFinite(p.end) ? p.end : Date.now()) - p.start) / 1000,
        detail: `${inPhase.length} requests by ${scale.callers} callers, timeout ${scale.timeoutMs} ms`,
        figures: `${[...byResult].map(([k, v]) => `${k} ${v}`).join(", ")}; slowest settle ${maxSettle} ms${recovery}`,
        problems
      })
      // The server side of the same phase.
      const confirmedHere = [...publisher.confirmed].filter(([, t]) => t >= p.start && t < p.end).map(([id]) => id)
      const lostHere = confirmedHere.filter((id) => !handled.has(id))
      const redelivered = confirmedHere.filter((id) => (handled.get(id) ?? 0) > 1).length
      const twice = confirmedHere.filter((id) => (publisher.replies.get(`alo-${id}`) ?? 0) > 1).length
      // At-least-once: a redelivered request is answered again (warren's RpcClient drops the second reply as late);
      // more replies than deliveries would be a server bug.
      const overAnswered = confirmedHere.filter((id) =>
        (publisher.replies.get(`alo-${id}`) ?? 0) > (handled.get(id) ?? 0)
      ).length
      const serverProblems: Array<string> = []
      if (lostHere.length > 0) serverProblems.push(`${lostHere.length} confirmed requests never handled`)
      if (overAnswered > 0) serverProblems.push(`${overAnswered} requests got more replies than deliveries`)
      let serverRecovery = ""
      if (p.back !== undefined) {
        const ms = p.serverBack === undefined ? Number.POSITIVE_INFINITY : p.serverBack - p.back
        serverRecovery = `; server ready ${Number.isFinite(ms) ? `${ms} ms` : "never"} after the broker's return`
        if (!(ms <= RECOVERY_BOUND_MS)) serverProblems.push(`server ready again only after ${ms} ms`)
      }
      rows.push({
        fault: `rpc server: ${p.name}`,
        seconds: ((Number.isFinite(p.end) ? p.end : Date.now()) - p.start) / 1000,
        detail: `persistent requests to a durable queue, at-least-once acks`,
        figures:
          `${confirmedHere.length} confirmed, ${
            confirmedHere.length - lostHere.length
          } handled, ${redelivered} handled twice (redelivered), ` +
          `${twice} answered twice on the wire${serverRecovery}`,
        problems: serverProblems
      })
    }
    log(
      `rpc: client stats ${
        JSON.stringify(stats)
      }; publisher published ${publisher.published()}, confirmed ${publisher.confirmed.size}`
    )
    return rows
  }).pipe(Effect.scoped, Effect.orDie)
