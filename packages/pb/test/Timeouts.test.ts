// The server's timeouts run on Effect's clock: here the TestClock, moved by hand, while the sockets are real.
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Option, TestClock } from "effect"
import * as Net from "node:net"
import { connect, encodeFrame, errorText } from "./utils/pbClient.js"
import { startServer } from "./utils/server.js"
import { bigReplyRegistration, streamService, syncRegistration } from "./utils/services.js"
import { ServiceRegistry } from "@warren/pb"

/** One turn of Node's event loop (socket events get delivered); no timer. */
const tick = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

/** Turns the event loop until `count` sleeps are pending on the TestClock (the server has reached its waits). */
const untilSleeping = (count: number) =>
  Effect.gen(function*() {
    while (Chunk.size(yield* TestClock.sleeps()) < count) yield* tick
  })

/** Whether the client's socket closes within a few event-loop turns (a half-closed one may still be open). */
const closedSoon = (socket: Net.Socket, ended = false) =>
  Effect.gen(function*() {
    const done = () => socket.closed || (ended && socket.readableEnded)
    for (let i = 0; i < 50 && !done(); i++) yield* tick
    return done()
  })

describe("timeouts (TestClock)", () => {
  it.scoped("idle timeout: a quiet connection is closed after it, not before", () =>
    Effect.gen(function*() {
      const { port, server } = yield* startServer([syncRegistration()], { idleTimeout: "10 seconds" })
      const client = yield* connect(port)
      assert.strictEqual((yield* client.request(101, "x")).code, 102)
      yield* untilSleeping(1) // the idle sweep
      yield* TestClock.adjust("9 seconds")
      assert.isFalse(yield* closedSoon(client.socket, true))
      assert.strictEqual((yield* server.connections).length, 1)
      // A request is activity: the 10 seconds start again.
      assert.strictEqual((yield* client.request(101, "x")).code, 102)
      yield* TestClock.adjust("9 seconds")
      assert.isFalse(yield* closedSoon(client.socket, true))
      yield* TestClock.adjust("4 seconds")
      const frames = yield* client.untilClosed
      assert.strictEqual(frames.length, 0)
    }))

  it.scoped("idle timeout: activity is noted by the sweep, so a request just before the deadline counts in full", () =>
    Effect.gen(function*() {
      const { port, server } = yield* startServer([syncRegistration()], { idleTimeout: "10 seconds" })
      const client = yield* connect(port)
      yield* untilSleeping(1)
      // Serving reads no clock: the request at 9.9 s must still restart the 10 seconds (the sweep notes it).
      yield* TestClock.adjust("9900 millis")
      assert.strictEqual((yield* client.request(101, "x")).code, 102)
      yield* TestClock.adjust("9900 millis") // 19.8 s: 9.9 s after the request
      assert.isFalse(yield* closedSoon(client.socket, true))
      assert.strictEqual((yield* server.connections).length, 1)
      // ... and the connection is closed within 1.25x of the timeout after it (22.4 s).
      yield* TestClock.adjust("2600 millis")
      assert.deepStrictEqual(yield* client.untilClosed, [])
    }))

  it.scoped("idle timeout: a client holding a partial frame is idle too", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer([syncRegistration()], { idleTimeout: "10 seconds" })
      const client = yield* connect(port)
      yield* client.sendRaw(encodeFrame(101, "x".repeat(100)).subarray(0, 50))
      yield* untilSleeping(1)
      yield* TestClock.adjust("13 seconds")
      assert.deepStrictEqual(yield* client.untilClosed, [])
    }))

  it.scoped("stream idle timeout ends the stream with riak-style error; the connection stays", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer([ServiceRegistry.registration(streamService(), 107, 109)], {
        streamIdleTimeout: "30 seconds"
      })
      const client = yield* connect(port)
      yield* client.send(107, "hang")
      yield* untilSleeping(2) // the idle sweep and the stream's timeout
      yield* TestClock.adjust("29 seconds")
      const early = yield* Effect.raceFirst(
        Effect.map(client.next, Option.some),
        Effect.as(Effect.repeatN(tick, 20), Option.none())
      )
      assert.isTrue(Option.isNone(early))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(errorText(yield* client.next), "Stream timed out")
      yield* client.send(107)
      assert.strictEqual((yield* client.next).code, 108)
    }))

  it.scoped("close timeout: a client that never closes its side is destroyed after closeTimeout", () =>
    Effect.gen(function*() {
      const { port, server } = yield* startServer([syncRegistration()], { closeTimeout: "5 seconds" })
      // A half-open client: it keeps its side open after the server's FIN.
      const socket = yield* Effect.acquireRelease(
        Effect.async<Net.Socket, Error>((resume) => {
          const s = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
          s.once("connect", () => resume(Effect.succeed(s)))
          s.once("error", (error) => resume(Effect.fail(error)))
        }),
        (s) => Effect.sync(() => s.destroy())
      )
      socket.on("data", () => {})
      socket.on("error", () => {})
      // A zero-length frame ends the connection: the server ends its side and waits for ours.
      socket.write(Buffer.alloc(4))
      while (!socket.readableEnded) yield* tick
      yield* untilSleeping(2) // the idle sweep and the close timeout
      yield* TestClock.adjust("4 seconds")
      for (let i = 0; i < 20; i++) yield* tick
      // still waiting for the client: the connection holds its socket
      assert.strictEqual((yield* server.connections).length, 1)
      yield* TestClock.adjust("1 second")
      while ((yield* server.connections).length > 0) yield* tick
    }))

  it.scoped("close timeout: a client that closes is released at once", () =>
    Effect.gen(function*() {
      const { port, server } = yield* startServer([syncRegistration()], { closeTimeout: "5 seconds" })
      const client = yield* connect(port)
      yield* client.sendRaw(Buffer.alloc(4))
      assert.deepStrictEqual(yield* client.untilClosed, [])
      client.socket.end()
      while ((yield* server.connections).length > 0) yield* tick
    }))

  it.scoped("a never-reading client's peer close is seen at once, without any time passing", () =>
    Effect.gen(function*() {
      const { port, server } = yield* startServer([bigReplyRegistration()])
      const client = yield* connect(port)
      client.socket.pause()
      yield* client.sendRaw(Buffer.concat(Array.from({ length: 200 }, () => encodeFrame(140))))
      while (!(yield* server.connections).some((c) => c.writeBlocked)) yield* tick
      client.socket.destroy()
      while ((yield* server.connections).length > 0) yield* tick
      assert.strictEqual(yield* server.bufferedBytes, 0)
    }))
})
