// The one echo RPC server every RPC contender talks to: plain amqplib, in its own process, TCP_NODELAY on.
// It answers each request on the default exchange with routing key = reply_to and the same correlation_id, which
// serves server-named reply queues and direct reply-to (amq.rabbitmq.reply-to) alike. Like a real server it
// acknowledges each request after replying, with a prefetch window of PREFETCH unacknowledged deliveries.
import amqp from "amqplib"
import { childArgs, failChild } from "../lib/child.mjs"

const { url, queue } = childArgs()
/** Unacknowledged deliveries in flight at the server (basic.qos). */
const PREFETCH = 100

try {
  const connection = await amqp.connect(url, { noDelay: true })
  const channel = await connection.createChannel()
  await channel.assertQueue(queue, { durable: false, autoDelete: false })
  await channel.purgeQueue(queue)
  await channel.prefetch(PREFETCH)
  let served = 0
  await channel.consume(
    queue,
    (msg) => {
      if (msg === null) return
      const { replyTo, correlationId } = msg.properties
      if (replyTo) channel.publish("", replyTo, msg.content, { correlationId })
      channel.ack(msg)
      served++
    },
    { noAck: false }
  )
  process.on("message", async (msg) => {
    if (msg.type === "stats") {
      process.send({ type: "stats", cpu: process.cpuUsage(), rss: process.memoryUsage().rss, served })
    } else if (msg.type === "stop") {
      await channel.close().catch(() => {})
      await connection.close().catch(() => {})
      process.exit(0)
    }
  })
  process.send({ type: "ready" })
} catch (error) {
  failChild(error)
}
