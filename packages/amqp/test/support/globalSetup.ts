/**
 * Vitest global setup: a real broker for the project that asks for it.
 *
 * Each project gets its own private node, because the outage tests (`stopApp`) of one project must not
 * break the requests of another project's tests running at the same time. With `AMQP_URL` every project
 * uses that broker.
 */
import type { TestProject } from "vitest/node"
import { type BrokerInfo, start as startBroker } from "@warren/amqp/TestBroker"

declare module "vitest" {
  export interface ProvidedContext {
    broker: BrokerInfo
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const running = await startBroker()
  project.provide("broker", running.info)
  return () => running.stop()
}
