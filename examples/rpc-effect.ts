/**
 * An RPC server and a client over one AMQP connection, from Effect.
 *
 *   AMQP_URL=amqp://guest:guest@127.0.0.1:5672 npx tsx examples/rpc-effect.ts
 *
 * Prints the three replies, then exits.
 */
import { AmqpConnection, RpcClient, RpcServer } from "@warren/amqp"
import { Effect, Layer } from "effect"

const url = process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672"
// Names of our own, so the example never meets another program's queue.
const exchange = { name: `examples-rpc-${process.pid}`, type: "direct", options: { autoDelete: true } }

const Connection = AmqpConnection.layer({ urls: url })

// The server: replies with the request in upper case.
const Upper = RpcServer.layer(
  { exchange, queue: { name: `examples-upper-${process.pid}`, options: { exclusive: true } }, bindings: ["upper"] },
  (payload) => Effect.succeed(payload.toString().toUpperCase())
)

const Client = RpcClient.layer({ exchange: { name: exchange.name, type: "direct", options: { autoDelete: true } } })

const program = Effect.gen(function*() {
  const client = yield* RpcClient.RpcClient
  for (const word of ["hello", "from", "effect"]) {
    const reply = yield* client.request(word, "upper", {}, "5 seconds")
    console.log(reply.toString())
  }
}).pipe(Effect.catchTags({ RpcTimeout: () => Effect.logError("no reply in time") }))

program.pipe(
  Effect.provide(Layer.mergeAll(Client, Upper).pipe(Layer.provide(Connection))),
  Effect.runPromise
).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
