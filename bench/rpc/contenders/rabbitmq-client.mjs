// rabbitmq-client's RPCClient (direct reply-to), TCP_NODELAY on through its `noDelay` connection option.
import { Connection } from "rabbitmq-client"

export const label = "rabbitmq-client"

export const open = async ({ url, queue }) => {
  const connection = new Connection({ url, noDelay: true, connectionName: "warren-bench" })
  await connection.onConnect(10_000, true)
  const rpc = connection.createRPCClient({ confirm: false, timeout: 30_000 })
  return {
    request: async (payload) => (await rpc.send(queue, payload)).body,
    close: async () => {
      await rpc.close().catch(() => {})
      await connection.close().catch(() => {})
    }
  }
}
