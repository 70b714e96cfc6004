import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import Riak, { type Client as RiakClient } from "basho-riak-client"
import { BasicService } from "@warren/pb"
import { connect, decodeError } from "./utils/pbClient.js"
import { startServer } from "./utils/server.js"

/** Basho's official Node client, connected to `port`, stopped with the scope. */
const bashoClient = (port: number) =>
  Effect.acquireRelease(
    Effect.async<RiakClient, unknown>((resume) => {
      const client: RiakClient = new Riak.Client([`127.0.0.1:${port}`], (error) =>
        resume(error ? Effect.fail(error) : Effect.succeed(client)))
    }),
    (client) =>
      Effect.async<void>((resume) => client.stop(() => resume(Effect.void)))
  )

const call = <A>(f: (callback: (error: unknown, result: A) => void) => void) =>
  Effect.async<A, unknown>((resume) =>
    f((error, result) => resume(error ? Effect.fail(error) : Effect.succeed(result)))
  )

describe("BasicService", () => {
  const service = BasicService.make({ node: "warren@test", serverVersion: "9.9.9" })

  it.scopedLive("ping and server info on the wire (1 -> 2 code only; 7 -> 8 with both fields)", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer(BasicService.registrations(service))
      const client = yield* connect(port)
      const pong = yield* client.request(1)
      assert.deepStrictEqual([pong.code, pong.body.length], [2, 0])
      const info = yield* client.request(7)
      assert.strictEqual(info.code, 8)
      // node = "warren@test" (field 1), server_version = "9.9.9" (field 2)
      assert.deepStrictEqual(
        info.body,
        Buffer.concat([
          Buffer.from([0x0a, 11]),
          Buffer.from("warren@test"),
          Buffer.from([0x12, 5]),
          Buffer.from("9.9.9")
        ])
      )
    }))

  it.scopedLive("defaults: node warren@<host>, this package's version", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer(BasicService.registrations(BasicService.make()))
      const client = yield* connect(port)
      const info = yield* client.request(7)
      assert.include(info.body.toString(), "warren@")
      assert.include(info.body.toString(), BasicService.version)
    }))

  it.scopedLive("Basho's Node client (basho-riak-client 2.4): Ping and FetchServerInfo", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer(BasicService.registrations(service))
      const riak = yield* bashoClient(port)
      assert.strictEqual(yield* call<boolean>((cb) => riak.ping(cb)), true)
      const info = yield* call<{ node: string; server_version: string }>((cb) => riak.fetchServerInfo(cb))
      assert.deepStrictEqual(info, { node: "warren@test", server_version: "9.9.9" })
      // an error reply reaches the client as an error with riak's text
      const error = yield* Effect.flip(call((cb) => riak.fetchValue({ bucket: "b", key: "k" }, cb)))
      assert.include(String(error), "Unknown message code: 9")
    }))

  it.scopedLive("registrations cover 1..2 and 7..8 only", () =>
    Effect.gen(function*() {
      const { port, registry } = yield* startServer(BasicService.registrations(service))
      assert.deepStrictEqual((yield* registry.services).map((s) => s.name), ["riak_api_basic_pb_service"])
      const client = yield* connect(port)
      const unknown = yield* client.request(3)
      assert.deepStrictEqual(decodeError(unknown.body), { errmsg: "Unknown message code: 3", errcode: 0 })
      const registrations = BasicService.registrations(service)
      assert.deepStrictEqual(registrations.map((r) => [r.min, r.max]), [[1, 2], [7, 8]])
    }))

  it.scopedLive("reply codes sent as requests (2, 8): riak's text, then the connection closes (riak's process/2 crashes)", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer(BasicService.registrations(service))
      for (const code of [2, 8]) {
        const client = yield* connect(port)
        assert.strictEqual((yield* client.request(1)).code, 2)
        yield* client.send(code)
        const frames = yield* client.untilClosed
        assert.deepStrictEqual(frames.map((f) => decodeError(f.body)), [
          { errmsg: "Error processing incoming message", errcode: 0 }
        ])
      }
      // the server goes on
      const other = yield* connect(port)
      assert.strictEqual((yield* other.request(1)).code, 2)
    }))
})
