// The benchmark's broker: warren's TestBroker (a private RabbitMQ node, or AMQP_URL), from the packages'
// compiled output (`npm run bench` runs `tsc -b` first).
import { start } from "@warren/amqp/TestBroker"

/** Starts the broker; resolves to `{ url, kind, stop }`. */
export const startBroker = async () => {
  const running = await start()
  return { url: running.info.url, kind: running.info.kind, stop: running.stop }
}
