/**
 * The PB server's Promise form (`@warren/pb/promise`) over real TCP sockets: plain and Promise replies, a rejected
 * handler answered with an error reply (the connection goes on), close frees the port, typed start errors.
 */
import { assert, describe, it } from "@effect/vitest"
import { PbServerError } from "@warren/pb/PbServer"
import { serve } from "@warren/pb/promise"
import { InvalidCodeRange } from "@warren/pb/ServiceRegistry"
import { Effect } from "effect"
import * as Net from "node:net"
import { connect, errorText } from "./utils/pbClient.js"

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    socket.once("connect", () => {
      socket.destroy()
      resolve(false)
    })
    socket.once("error", () => resolve(true))
  })

describe("@warren/pb/promise", () => {
  it.live("serves plain and Promise replies; a rejection is an error reply and the connection goes on; close frees the port", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() =>
        serve({ port: 0 }, [
          { name: "plain", codes: [200, 200], handle: (_code, body) => ({ code: 201, body }) },
          {
            name: "async",
            codes: [210, 211],
            handle: async (code, body) => {
              await new Promise((resolve) => setImmediate(resolve))
              if (Buffer.from(body).toString() === "fail") throw new Error("no such thing")
              return { code: code + 10, body: `${code}:${Buffer.from(body).toString().toUpperCase()}` }
            }
          }
        ])
      )
      const port = server.address.port
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* connect(port)
        const plain = yield* client.request(200, "ping")
        assert.strictEqual(plain.code, 201)
        assert.strictEqual(plain.body.toString(), "ping")
        const later = yield* client.request(211, "abc")
        assert.strictEqual(later.code, 221)
        assert.strictEqual(later.body.toString(), "211:ABC")
        const failed = yield* client.request(210, "fail")
        assert.strictEqual(errorText(failed), "no such thing")
        const again = yield* client.request(210, "ok")
        assert.strictEqual(again.body.toString(), "210:OK")
      }))
      yield* Effect.promise(() => server.close())
      assert.isTrue(yield* Effect.promise(() => refused(port)), "the port is closed")
    }))

  it.live("start errors reject with the typed errors: a port in use, a bad code range", () =>
    Effect.gen(function*() {
      const first = yield* Effect.promise(() => serve({ port: 0 }, []))
      const inUse = yield* Effect.promise(() =>
        serve({ port: first.address.port }, []).then(() => undefined, (error: unknown) => error)
      )
      yield* Effect.promise(() => first.close())
      assert.instanceOf(inUse, PbServerError)
      assert.instanceOf(inUse, Error)
      assert.strictEqual((inUse as PbServerError).reason, "Open")
      const badRange = yield* Effect.promise(() =>
        serve({ port: 0 }, [{ name: "bad", codes: [300, 301], handle: () => ({ code: 1 }) }]).then(
          () => undefined,
          (error: unknown) => error
        )
      )
      assert.instanceOf(badRange, InvalidCodeRange)
      assert.strictEqual((badRange as InvalidCodeRange)._tag, "InvalidCodeRange")
    }))
})
