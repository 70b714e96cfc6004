import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Metric, Scope } from "effect"
import * as Net from "node:net"
import { PbCodec, PbServer, PbService, RiakPb, ServiceRegistry } from "@warren/pb"
import { ClientClosed, connect, encodeFrame, errorText } from "./utils/pbClient.js"
import { eventually, startServer } from "./utils/server.js"
import { effectStreamService, encodeText, streamService, syncRegistration, syncService } from "./utils/services.js"

describe("PbServer", () => {
  describe("requests (riak's pb_service_test)", () => {
    it.scopedLive("sync request 101 -> 102 ok", () =>
      Effect.gen(function*() {
        const { port, server } = yield* startServer([syncRegistration()])
        assert.isAbove(port, 0)
        assert.strictEqual(server.address.host, "127.0.0.1")
        const client = yield* connect(port)
        const reply = yield* client.request(101, "x")
        assert.strictEqual(reply.code, 102)
        assert.strictEqual(reply.body.toString(), "ok")
      }))

    it.scopedLive("two frames in one write get two replies, in order", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        yield* client.sendRaw(Buffer.concat([encodeFrame(101, "count"), encodeFrame(101, "count")]))
        const first = yield* client.next
        const second = yield* client.next
        assert.deepStrictEqual([first.body.toString(), second.body.toString()], ["1", "2"])
      }))

    it.scopedLive("many pipelined frames: every reply, in order", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        const frames = Array.from({ length: 500 }, () => encodeFrame(101, "count"))
        yield* client.sendRaw(Buffer.concat(frames))
        for (let i = 1; i <= 500; i++) {
          const reply = yield* client.next
          assert.strictEqual(reply.body.toString(), String(i))
        }
      }))

    it.scopedLive("a 7 KiB frame split over several writes is reassembled", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(echoService, 120, 121)])
        const client = yield* connect(port)
        const body = Buffer.alloc(7 * 1024, "abcdefg")
        const bytes = encodeFrame(120, body)
        for (let at = 0; at < bytes.length; at += 1000) {
          yield* client.sendRaw(bytes.subarray(at, Math.min(at + 1000, bytes.length)))
          yield* Effect.yieldNow()
        }
        const reply = yield* client.next
        assert.strictEqual(reply.code, 121)
        assert.isTrue(reply.body.equals(body))
      }))

    it.scopedLive("replies encoded in pieces (iodata) are written as one frame each", () =>
      Effect.gen(function*() {
        const pieces = PbService.make({
          name: "pieces",
          init: () => undefined,
          decode: (_code, body) => PbService.decoded(Buffer.from(body).toString()),
          encode: (reply: string) =>
            reply === "none"
              ? Either.right([])
              : Either.right([Uint8Array.of(126), Buffer.from(reply), Buffer.from("!")]),
          process: (message, state) => PbService.replies([message, message], state)
        })
        const { port } = yield* startServer([ServiceRegistry.registration(pieces, 125, 126)])
        const client = yield* connect(port)
        yield* client.send(125, "hi")
        const frames = [yield* client.next, yield* client.next]
        assert.deepStrictEqual(frames.map((f) => [f.code, f.body.toString()]), [[126, "hi!"], [126, "hi!"]])
        assert.strictEqual(
          errorText(yield* client.request(125, "none")),
          "Internal service error: no encoding for response message"
        )
      }))

    it.scopedLive("state is per connection", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const a = yield* connect(port)
        const b = yield* connect(port)
        assert.strictEqual((yield* a.request(101, "count")).body.toString(), "1")
        assert.strictEqual((yield* a.request(101, "count")).body.toString(), "2")
        assert.strictEqual((yield* b.request(101, "count")).body.toString(), "1")
      }))
  })

  describe("error replies (connection stays open)", () => {
    const errorCase = (body: string, expected: string) =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        assert.strictEqual(errorText(yield* client.request(101, body)), expected)
        assert.strictEqual((yield* client.request(101, "x")).body.toString(), "ok")
      })

    it.scopedLive("unknown code", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        assert.strictEqual(errorText(yield* client.request(99)), "Unknown message code: 99")
        assert.strictEqual((yield* client.request(101, "x")).code, 102)
      }))

    it.scopedLive("STARTTLS while security is off", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        assert.strictEqual(errorText(yield* client.request(255)), "Security not enabled; STARTTLS not allowed.")
        assert.strictEqual((yield* client.request(101, "x")).code, 102)
      }))

    it.scopedLive("decode error", () => errorCase("undecodable", "Message decoding error: bad body"))
    it.scopedLive("process error (text)", () => errorCase("error", "my error"))
    it.scopedLive("process error ({format, Term})", () => errorCase("format", "{ reason: 'bad', n: 1 }"))
    it.scopedLive("process error ({format, Fmt, Args})", () => errorCase("formatWith", "bad thing #7"))
    it.scopedLive("process error (PbServiceError in the Effect)", () => errorCase("fail", "failed in Effect"))
    it.scopedLive("process error (PbServiceError from an Effect that runs)", () =>
      errorCase("failRunning", "failed running"))
    it.scopedLive("unexpected result", () =>
      errorCase("unexpected", "Unknown PB service response: { _tag: 'Bogus', state: 1 }"))
    it.scopedLive("unexpected result that is not even an object", () =>
      errorCase("null", "Unknown PB service response: null"))

    it.scopedLive("encode failure: error for that reply, the others are sent", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        yield* client.send(101, "unencodable")
        assert.strictEqual(errorText(yield* client.next), "Internal service error: no encoding for response message")
        assert.strictEqual((yield* client.next).body.toString(), "after")
        assert.strictEqual((yield* client.request(101, "x")).code, 102)
      }))

    it.scopedLive("undecodable protobuf body", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(authLikeService, 130, 131)])
        const client = yield* connect(port)
        // field 1 length-delimited, length 5, only 2 bytes follow
        const text = errorText(yield* client.request(130, Uint8Array.of(0x0a, 5, 1, 2)))
        assert.match(text, /^Message decoding error: /)
        // a missing required field
        assert.match(errorText(yield* client.request(130, Uint8Array.of())), /^Message decoding error: .*required/)
        // unknown fields are skipped
        const ok = yield* client.request(130, Uint8Array.of(0x0a, 1, 0x61, 0x12, 1, 0x62, 0x18, 7, 0x22, 1, 0x63))
        assert.strictEqual(ok.code, 131)
      }))
  })

  it.scopedLive("an Effect result keeps the service's state, whether already an Exit or run in the fiber", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer([syncRegistration()])
      const client = yield* connect(port)
      const texts = []
      for (const body of ["count", "countExit", "countEffect", "countExit", "count"]) {
        texts.push((yield* client.request(101, body)).body.toString())
      }
      assert.deepStrictEqual(texts, ["1", "2", "3", "4", "5"])
      // pipelined: Exit and run results interleaved in one batch, replies in order
      yield* client.sendRaw(
        Buffer.concat(["countEffect", "countExit", "count", "countEffect"].map((b) => encodeFrame(101, b)))
      )
      const pipelined = []
      for (let i = 0; i < 4; i++) pipelined.push((yield* client.next).body.toString())
      assert.deepStrictEqual(pipelined, ["6", "7", "8", "9"])
    }))

  it.scopedLive("a failing Effect that runs, pipelined between others: its error in order, the batch served on", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer([syncRegistration()])
      const client = yield* connect(port)
      yield* client.sendRaw(
        Buffer.concat(
          ["countEffect", "failRunning", "countEffect", "failRunning", "failRunning", "count"].map((b) =>
            encodeFrame(101, b)
          )
        )
      )
      const replies = []
      for (let i = 0; i < 6; i++) {
        const frame = yield* client.next
        replies.push(frame.code === 0 ? errorText(frame) : frame.body.toString())
      }
      // a failure keeps no state: the count goes on from the last success
      assert.deepStrictEqual(replies, ["1", "failed running", "2", "failed running", "failed running", "3"])
      assert.strictEqual((yield* client.request(101, "countEffect")).body.toString(), "4")
    }))

  describe("defects", () => {
    for (const body of ["throw", "die", "dieRunning"]) {
      it.scopedLive(`a defect (${body}) gets a generic error, closes that connection only`, () =>
        Effect.gen(function*() {
          const { port } = yield* startServer([syncRegistration()])
          const other = yield* connect(port)
          assert.strictEqual((yield* other.request(101, "count")).body.toString(), "1")
          const client = yield* connect(port)
          yield* client.send(101, body)
          const frames = yield* client.untilClosed
          assert.strictEqual(frames.length, 1)
          assert.strictEqual(errorText(frames[0]!), "Error processing incoming message")
          assert.notInclude(frames[0]!.body.toString(), "internal detail")
          // the other connection and the server go on
          assert.strictEqual((yield* other.request(101, "count")).body.toString(), "2")
          const fresh = yield* connect(port)
          assert.strictEqual((yield* fresh.request(101, "x")).code, 102)
        }))
    }

    it.scopedLive("a defect in init is a defect", () =>
      Effect.gen(function*() {
        const broken = PbService.make({
          name: "broken-init",
          init: (): number => {
            throw new Error("init bug")
          },
          decode: (_code, _body) => PbService.decoded(undefined),
          encode: (_: Uint8Array) => Either.right(Uint8Array.of(1)),
          process: (_message, state) => PbService.reply(Uint8Array.of(1), state)
        })
        const { port } = yield* startServer([ServiceRegistry.registration(broken, 140)])
        const client = yield* connect(port)
        yield* client.send(140)
        const frames = yield* client.untilClosed
        assert.deepStrictEqual(frames.map(errorText), ["Error processing incoming message"])
      }))
  })

  describe("streaming", () => {
    it.scopedLive("107 -> 108 foo, 108 foo, 109 bar (messages of other ids ignored)", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(streamService(), 107, 109)])
        const client = yield* connect(port)
        yield* client.send(107)
        const frames = [yield* client.next, yield* client.next, yield* client.next]
        assert.deepStrictEqual(frames.map((f) => [f.code, f.body.toString()]), [[108, "foo"], [108, "foo"], [
          109,
          "bar"
        ]])
        // the stream is over: a new request works
        yield* client.send(107)
        assert.strictEqual((yield* client.next).code, 108)
      }))

    it.scopedLive("a list reply in one step sends several frames", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(streamService(), 107, 109)])
        const client = yield* connect(port)
        yield* client.send(107, "multi")
        const frames = [yield* client.next, yield* client.next, yield* client.next]
        assert.deepStrictEqual(frames.map((f) => [f.code, f.body.toString()]), [[108, "foo"], [108, "foo"], [
          109,
          "bar"
        ]])
      }))

    it.scopedLive("an error ends the stream, the connection stays", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(streamService(), 107, 109)])
        const client = yield* connect(port)
        yield* client.send(107, "error")
        assert.strictEqual((yield* client.next).code, 108)
        assert.strictEqual(errorText(yield* client.next), "stream error")
        yield* client.send(107)
        assert.strictEqual((yield* client.next).code, 108)
      }))

    it.scopedLive("a defect in processStream: generic error, close", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(streamService(), 107, 109)])
        const client = yield* connect(port)
        yield* client.send(107, "crash")
        const frames = yield* client.untilClosed
        assert.deepStrictEqual(frames.map(errorText), ["Error processing stream message"])
      }))

    it.scopedLive("a request during a stream: riak's error, then close", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(streamService(), 107, 109)])
        const client = yield* connect(port)
        yield* client.send(107, "hang")
        yield* client.send(107)
        const frames = yield* client.untilClosed
        assert.deepStrictEqual(frames.map(errorText), ["Cannot send another request while one is in progress"])
      }))

    it.scopedLive("a client that disconnects mid-stream cancels the stream's work", () =>
      Effect.gen(function*() {
        const interrupted = yield* Deferred.make<void>()
        const { port, server } = yield* startServer([
          ServiceRegistry.registration(streamService(interrupted), 107, 109)
        ])
        const client = yield* connect(port)
        yield* client.send(107, "hang")
        yield* eventually(Effect.map(server.connections, (all) => all.some((c) => c.streaming)))
        client.socket.destroy()
        yield* Deferred.await(interrupted)
        yield* eventually(Effect.map(server.connections, (all) => all.length === 0))
      }))

    it.scopedLive("the Effect Stream form: every element, then the stream ends", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(effectStreamService(), 110, 112)])
        const client = yield* connect(port)
        yield* client.send(110, "300")
        for (let i = 0; i < 300; i++) {
          const frame = yield* client.next
          assert.deepStrictEqual([frame.code, frame.body.toString()], [111, String(i)])
        }
        const last = yield* client.next
        assert.deepStrictEqual([last.code, last.body.toString()], [112, "done"])
        // no extra frame: the next reply is the next request's
        yield* client.send(110, "1")
        assert.deepStrictEqual((yield* client.next).body.toString(), "0")
        assert.deepStrictEqual((yield* client.next).body.toString(), "done")
      }))

    it.scopedLive("the Effect Stream form: a PbServiceError ends it with an error reply", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(effectStreamService(), 110, 112)])
        const client = yield* connect(port)
        yield* client.send(110, "fail")
        assert.strictEqual((yield* client.next).body.toString(), "0")
        assert.strictEqual(errorText(yield* client.next), "stream failed")
        yield* client.send(110, "1")
        assert.strictEqual((yield* client.next).body.toString(), "0")
      }))

    it.scopedLive("the Effect Stream form: a defect closes with the stream error text", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(effectStreamService(), 110, 112)])
        const client = yield* connect(port)
        yield* client.send(110, "die")
        const frames = yield* client.untilClosed
        assert.strictEqual(frames[0]!.body.toString(), "0")
        assert.deepStrictEqual(frames.slice(1).map(errorText), ["Error processing stream message"])
      }))
  })

  describe("registration while running", () => {
    it.scopedLive("late registration: unknown code, register, same connection succeeds", () =>
      Effect.gen(function*() {
        const { port, registry } = yield* startServer([])
        const client = yield* connect(port)
        assert.strictEqual(errorText(yield* client.request(101, "x")), "Unknown message code: 101")
        yield* registry.register(syncService(), 101, 102)
        assert.strictEqual((yield* client.request(101, "x")).body.toString(), "ok")
      }))

    it.scopedLive("swap: connections use the new service (with its own state)", () =>
      Effect.gen(function*() {
        const { port, registry } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        assert.strictEqual((yield* client.request(101, "x")).body.toString(), "ok")
        const failed = yield* Effect.either(registry.swap(syncService("new", "new"), 101, 103))
        assert.isTrue(Either.isLeft(failed) && failed.left._tag === "RangeNotRegistered")
        yield* registry.swap(syncService("new", "new"), 101, 102)
        assert.strictEqual((yield* client.request(101, "x")).body.toString(), "new")
        assert.strictEqual((yield* client.request(101, "count")).body.toString(), "2")
        const fresh = yield* connect(port)
        assert.strictEqual((yield* fresh.request(101, "x")).body.toString(), "new")
      }))

    it.scopedLive("deregistration: the code becomes unknown", () =>
      Effect.gen(function*() {
        const service = syncService()
        const { port, registry } = yield* startServer([ServiceRegistry.registration(service, 101, 102)])
        const client = yield* connect(port)
        assert.strictEqual((yield* client.request(101, "x")).code, 102)
        yield* registry.deregister(service, 101, 102)
        assert.strictEqual(errorText(yield* client.request(101, "x")), "Unknown message code: 101")
      }))
  })

  describe("connections and limits", () => {
    it.scopedLive("connect-and-close health checks do not disturb the server", () =>
      Effect.gen(function*() {
        const { port, server } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        for (let i = 0; i < 50; i++) {
          yield* Effect.async<void>((resume) => {
            const socket = Net.connect({ port, host: "127.0.0.1" }, () => {
              if (i % 2 === 0) socket.destroy()
              else socket.end()
            })
            socket.on("error", () => {})
            socket.on("close", () => resume(Effect.void))
          })
        }
        assert.strictEqual((yield* client.request(101, "count")).body.toString(), "1")
        const fresh = yield* connect(port)
        assert.strictEqual((yield* fresh.request(101, "x")).code, 102)
        yield* eventually(Effect.map(server.connections, (all) => all.length === 2))
      }))

    it.scopedLive("a client that half-closes still gets its replies", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        yield* client.sendRaw(Buffer.concat([encodeFrame(101, "count"), encodeFrame(101, "count")]))
        client.socket.end()
        const frames = yield* client.untilClosed
        assert.deepStrictEqual(frames.map((f) => f.body.toString()), ["1", "2"])
      }))

    it.scopedLive("oversized frame: error reply from the header alone, then close", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()], { maxFrameSize: 1024 })
        const client = yield* connect(port)
        assert.strictEqual((yield* client.request(101, "x")).code, 102)
        // only the header of a 1 GiB frame: the server must answer without waiting for the body
        const header = Buffer.alloc(4)
        header.writeUInt32BE(1024 * 1024 * 1024)
        yield* client.sendRaw(header)
        const frames = yield* client.untilClosed
        assert.deepStrictEqual(frames.map(errorText), ["Message too large: 1073741824 bytes (limit 1024)"])
      }))

    it.scopedLive("a frame of exactly the maximum size is accepted", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(echoService, 120, 121)], {
          maxFrameSize: 1024
        })
        const client = yield* connect(port)
        const reply = yield* client.request(120, Buffer.alloc(1023, 1))
        assert.strictEqual(reply.body.length, 1023)
      }))

    it.scopedLive("zero-length frame: closed without a reply (after earlier replies)", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        yield* client.sendRaw(Buffer.concat([encodeFrame(101, "x"), Buffer.alloc(4)]))
        const frames = yield* client.untilClosed
        assert.deepStrictEqual(frames.map((f) => f.code), [102])
      }))

    it.scopedLive("max connections: the extra one gets an error and is closed", () =>
      Effect.gen(function*() {
        const { port, server } = yield* startServer([syncRegistration()], { maxConnections: 2 })
        const a = yield* connect(port)
        const b = yield* connect(port)
        assert.strictEqual((yield* a.request(101, "x")).code, 102)
        assert.strictEqual((yield* b.request(101, "x")).code, 102)
        const c = yield* connect(port)
        const frames = yield* c.untilClosed
        assert.deepStrictEqual(frames.map(errorText), ["Too many connections"])
        a.socket.destroy()
        yield* eventually(Effect.map(server.connections, (all) => all.length === 1))
        const d = yield* connect(port)
        assert.strictEqual((yield* d.request(101, "x")).code, 102)
      }))

    it.scopedLive(
      "a client that never reads its replies cannot make the server buffer without bound",
      () =>
        Effect.gen(function*() {
          const replySize = 64 * 1024
          let processed = 0
          const big = PbService.make({
            name: "big",
            init: () => undefined,
            decode: (_code, _body) => PbService.decoded(undefined),
            encode: (reply: Uint8Array) => Either.right(reply),
            process: (_message, state) => {
              processed++
              const reply = new Uint8Array(replySize)
              reply[0] = 151
              return PbService.reply(reply, state)
            }
          })
          const { port, server } = yield* startServer([ServiceRegistry.registration(big, 150, 151)], {
            readBufferBytes: 4096
          })
          const client = yield* connect(port)
          client.socket.pause()
          const requests = 4000 // 4000 x 64 KiB = 250 MiB of replies if nothing held the server back
          yield* Effect.sync(() =>
            client.socket.write(Buffer.concat(Array.from({ length: requests }, () => encodeFrame(150))))
          )
          // the server stops: its writes are not drained, its reads are paused
          yield* eventually(
            Effect.map(server.connections, (all) => all.length === 1 && all[0]!.writeBlocked && all[0]!.readPaused)
          )
          const blockedAt = processed
          assert.isBelow(blockedAt, requests / 4)
          const [info] = yield* server.connections
          assert.isBelow(info!.bufferedBytes, 4 * 1024 * 1024)
          // the client reads: everything arrives, in order
          client.socket.resume()
          for (let i = 0; i < requests; i++) {
            const frame = yield* client.next
            assert.strictEqual(frame.code, 151)
            assert.strictEqual(frame.body.length, replySize - 1)
          }
          assert.strictEqual(processed, requests)
        }),
      60_000
    )

    it.scopedLive("requests block (not drop) a producer when the mailbox is full", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([ServiceRegistry.registration(effectStreamService(), 110, 112)], {
          mailboxCapacity: 2
        })
        const client = yield* connect(port)
        yield* client.send(110, "2000")
        for (let i = 0; i < 2000; i++) assert.strictEqual((yield* client.next).body.toString(), String(i))
        assert.strictEqual((yield* client.next).body.toString(), "done")
      }))
  })

  describe("server", () => {
    it.scopedLive("invalid options fail with a Config error", () =>
      Effect.gen(function*() {
        const registry = yield* ServiceRegistry.make
        const exit = yield* Effect.exit(
          PbServer.make({ port: 70000 }).pipe(Effect.provideService(ServiceRegistry.ServiceRegistry, registry))
        )
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(
          PbServer.make({ port: -1 }).pipe(Effect.provideService(ServiceRegistry.ServiceRegistry, registry))
        )
        assert.strictEqual(error.reason, "Config")
      }))

    it.scopedLive("a port in use fails with an Open error", () =>
      Effect.gen(function*() {
        const { port } = yield* startServer([])
        const registry = yield* ServiceRegistry.make
        const error = yield* Effect.flip(
          PbServer.make({ port }).pipe(Effect.provideService(ServiceRegistry.ServiceRegistry, registry))
        )
        assert.strictEqual(error.reason, "Open")
      }))

    it.scopedLive("closing the scope stops the server and its connections", () =>
      Effect.gen(function*() {
        const { port, client } = yield* Effect.scoped(Effect.gen(function*() {
          const { port } = yield* startServer([syncRegistration()])
          const client = yield* connect(port)
          assert.strictEqual((yield* client.request(101, "x")).code, 102)
          return { port, client }
        }))
        const error = yield* Effect.flip(client.next)
        assert.instanceOf(error, ClientClosed)
        const refused = yield* Effect.exit(connect(port))
        assert.isTrue(Exit.isFailure(refused))
      }))

    it.scopedLive("closing the server's scope ends connections in every state: never used, idle, streaming", () =>
      Effect.gen(function*() {
        const interrupted = yield* Deferred.make<void>()
        const serverScope = yield* Scope.make()
        const { port, server } = yield* Scope.extend(
          startServer([syncRegistration(), ServiceRegistry.registration(streamService(interrupted), 107, 109)]),
          serverScope
        )
        // The clients live in the test's scope: only the server's shutdown can close them.
        const fresh = yield* connect(port)
        const idle = yield* connect(port)
        assert.strictEqual((yield* idle.request(101, "x")).code, 102)
        const streaming = yield* connect(port)
        yield* streaming.send(107, "hang")
        yield* eventually(Effect.map(server.connections, (all) => all.length === 3 && all.some((c) => c.streaming)))
        yield* Scope.close(serverScope, Exit.void)
        for (const client of [fresh, idle, streaming]) {
          assert.instanceOf(yield* Effect.flip(client.next), ClientClosed)
        }
        yield* Deferred.await(interrupted)
        assert.deepStrictEqual(yield* server.connections, [])
      }))

    it.scopedLive("metrics: accepted, active, requests by code, errors by kind", () =>
      Effect.gen(function*() {
        const requests = Metric.tagged(PbServer.metrics.requests, "code", "101")
        const unknown = Metric.tagged(PbServer.metrics.errors, "kind", "unknown_code")
        const before = {
          accepted: (yield* Metric.value(PbServer.metrics.connectionsAccepted)).count,
          requests: (yield* Metric.value(requests)).count,
          unknown: (yield* Metric.value(unknown)).count,
          latency: (yield* Metric.value(PbServer.metrics.requestDuration)).count
        }
        const { port } = yield* startServer([syncRegistration()])
        const client = yield* connect(port)
        yield* client.request(101, "x")
        yield* client.request(101, "x")
        yield* client.request(98)
        assert.isAtLeast((yield* Metric.value(PbServer.metrics.connectionsAccepted)).count - before.accepted, 1)
        assert.isAtLeast((yield* Metric.value(requests)).count - before.requests, 2)
        assert.isAtLeast((yield* Metric.value(unknown)).count - before.unknown, 1)
        assert.isAtLeast((yield* Metric.value(PbServer.metrics.requestDuration)).count - before.latency, 2)
        assert.isAtLeast((yield* Metric.value(PbServer.metrics.connectionsActive)).value, 1)
      }))
  })
})

/** Codes 120..121: echoes the body on 121. */
const echoService = PbService.make({
  name: "echo",
  init: () => undefined,
  decode: (_code, body) => PbService.decoded(body),
  encode: (reply: Uint8Array) => Either.right(Buffer.concat([Uint8Array.of(121), reply])),
  process: (message, state) => PbService.reply(message, state)
})

/** Codes 130..131: decodes RpbAuthReq with the protobuf codec and replies 131. */
const authCodec = PbCodec.make<{ RpbAuthReq: RiakPb.RpbAuthReq }>(RiakPb.schema(), { RpbAuthReq: 130 })
const authLikeService = PbService.make({
  name: "auth-like",
  init: () => undefined,
  decode: authCodec.decode,
  encode: (_: RiakPb.RpbAuthReq) => encodeText({ code: 131, text: "ok" }),
  process: (message, state) => PbService.reply(message, state)
})
