/** The README's RPC example, run as written (with names private to this test) against the real broker. */
import { assert, it } from "@effect/vitest"
import { AmqpConnection, RpcClient, RpcServer } from "@warren/amqp"
import { Effect, Layer } from "effect"
import { amqpUrl } from "./support/faults.js"

it.live("the README example: a server and a client over one connection", () =>
  Effect.gen(function*() {
    const exchange = `readme-rpc-${process.pid}`
    const Connection = AmqpConnection.layer({ urls: amqpUrl(), connectionName: "warren-test-readme" })

    const Upper = RpcServer.layer(
      { exchange: { name: exchange, type: "direct" }, queue: `${exchange}-upper`, bindings: ["upper"] },
      (payload) => Effect.succeed(payload.toString().toUpperCase())
    )

    const program = Effect.gen(function*() {
      const client = yield* RpcClient.RpcClient
      const reply = yield* client.request("hello", "upper", { priority: 1 }, "2 seconds")
      return reply.toString()
    }).pipe(Effect.catchTags({ RpcTimeout: () => Effect.succeed("no reply in time") }))

    const Client = RpcClient.layer({ exchange: { name: exchange, type: "direct" } })
    const reply = yield* program.pipe(Effect.provide(Layer.mergeAll(Client, Upper).pipe(Layer.provide(Connection))))
    assert.strictEqual(reply, "HELLO")
  }))
