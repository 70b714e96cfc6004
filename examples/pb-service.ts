/**
 * A PB service of your own, registered next to Riak KV on one server: message code 200 carries a UTF-8 text,
 * the reply (code 201) is that text reversed, plus how many requests this connection has made (per-connection
 * state). The example then talks to the server over a raw TCP socket: a stock Riak client would not know code 200.
 *
 *   npx tsx examples/pb-service.ts
 */
import { KvService, KvStore } from "@warren/kv"
import { BasicService, PbServer, PbService, ServiceRegistry } from "@warren/pb"
import { Effect, Either, Layer } from "effect"
import * as Net from "node:net"

const ReverseReq = 200
const ReverseResp = 201

const reverse = PbService.make<string, string, number>({
  name: "example_reverse",
  init: () => 0,
  decode: (_code, body) => PbService.decoded(new TextDecoder().decode(body)),
  encode: (reply) => Either.right([Uint8Array.of(ReverseResp), new TextEncoder().encode(reply)]),
  process: (text, served) => PbService.reply(`${Array.from(text).reverse().join("")} (#${served + 1})`, served + 1)
})

const Services = Layer.mergeAll(
  ServiceRegistry.registered([
    ...BasicService.registrations(BasicService.make()),
    ServiceRegistry.registration(reverse, ReverseReq, ReverseResp)
  ]),
  KvService.layer.pipe(Layer.provide(KvStore.layer()))
).pipe(Layer.provideMerge(ServiceRegistry.layer))

/** Sends one frame with `code` and `body`; resolves with the reply's code and body. */
const roundTrip = (socket: Net.Socket, code: number, body: string) =>
  new Promise<{ code: number; body: string }>((resolve, reject) => {
    let buffer = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      if (buffer.length >= 4 && buffer.length >= 4 + buffer.readUInt32BE(0)) {
        socket.off("data", onData)
        resolve({ code: buffer[4]!, body: buffer.subarray(5, 4 + buffer.readUInt32BE(0)).toString() })
      }
    }
    socket.on("data", onData)
    socket.once("error", reject)
    const payload = Buffer.from(body)
    const header = Buffer.alloc(5)
    header.writeUInt32BE(payload.length + 1, 0)
    header[4] = code
    socket.write(Buffer.concat([header, payload]))
  })

const program = Effect.gen(function*() {
  const { address } = yield* PbServer.PbServer
  const replies = yield* Effect.promise(async () => {
    const socket = Net.connect({ host: address.host, port: address.port })
    await new Promise((resolve) => socket.once("connect", resolve))
    const out = [
      await roundTrip(socket, ReverseReq, "warren"),
      await roundTrip(socket, ReverseReq, "riak"),
      await roundTrip(socket, 1, "") // RpbPingReq, served by the basic service next to ours
    ]
    socket.destroy()
    return out
  })
  for (const reply of replies) console.log(`code ${reply.code}: ${reply.body}`)
})

program.pipe(
  Effect.provide(PbServer.layer({ host: "127.0.0.1", port: 0 }).pipe(Layer.provide(Services))),
  Effect.runPromise
).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
