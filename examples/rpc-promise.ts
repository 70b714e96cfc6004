/**
 * An RPC server and a client from Promise code (no Effect in sight): `@warren/amqp/promise`.
 *   AMQP_URL=amqp://guest:guest@127.0.0.1:5672 npx tsx examples/rpc-promise.ts
 */
import { connect, RpcTimeout, RpcUnroutable, serve } from "@warren/amqp/promise"

const url = process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672"
const queue = `examples-promise-upper-${process.pid}`

const main = async () => {
  const server = await serve(
    url,
    { queue: { name: queue, options: { exclusive: true } } },
    async (payload) => payload.toString().toUpperCase()
  )
  const rpc = await connect(url)
  try {
    for (const word of ["hello", "from", "promises"]) {
      const reply = await rpc.request(word, queue, { timeout: 5000 })
      console.log(reply.toString())
    }
    try {
      await rpc.request("anyone?", `nobody-${process.pid}`, { timeout: 2000, mandatory: true })
    } catch (error) {
      if (error instanceof RpcUnroutable) console.log("unroutable, as expected")
      else if (error instanceof RpcTimeout) console.log("no reply in time")
      else throw error
    }
  } finally {
    await rpc.close()
    await server.close()
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
