// The practical limit: a minimal RPC client on raw amqplib. One connection (TCP_NODELAY), one channel, a
// server-named exclusive reply queue consumed without acks, and a Map from correlation id to the caller's resolver.
import amqp from "amqplib"

export const label = "raw amqplib"

export const open = async ({ url, queue }) => {
  const connection = await amqp.connect(url, { noDelay: true })
  const channel = await connection.createChannel()
  const { queue: replyQueue } = await channel.assertQueue("", { exclusive: true, autoDelete: true })
  const pending = new Map()
  let nextId = 0
  await channel.consume(
    replyQueue,
    (msg) => {
      if (msg === null) return
      const id = msg.properties.correlationId
      const resolve = pending.get(id)
      if (resolve !== undefined) {
        pending.delete(id)
        resolve(msg.content)
      }
    },
    { noAck: true }
  )
  return {
    request: (payload) =>
      new Promise((resolve) => {
        const correlationId = String(nextId++)
        pending.set(correlationId, resolve)
        channel.publish("", queue, payload, { replyTo: replyQueue, correlationId })
      }),
    close: async () => {
      await channel.close().catch(() => {})
      await connection.close().catch(() => {})
    }
  }
}
