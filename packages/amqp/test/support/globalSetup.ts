/**
 * Vitest global setup: one real broker for every project of the run that asks for it.
 *
 * Global setups of all projects run in vitest's main process, so a process-wide holder shares one
 * node between projects (amqp, cli) and stops it after the last teardown.
 */
import type { TestProject } from "vitest/node"
import { type BrokerInfo, type RunningBroker, startBroker } from "./broker.js"

declare module "vitest" {
  export interface ProvidedContext {
    broker: BrokerInfo
  }
}

interface Holder {
  broker: Promise<RunningBroker>
  users: number
}

const holderKey = Symbol.for("warren.test.broker")
const globalHolder = globalThis as typeof globalThis & { [holderKey]?: Holder }

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let holder = globalHolder[holderKey]
  if (holder === undefined) {
    holder = { broker: startBroker(), users: 0 }
    globalHolder[holderKey] = holder
  }
  holder.users++
  const running = await holder.broker
  project.provide("broker", running.info)
  return async () => {
    const current = globalHolder[holderKey]
    if (current === undefined) return
    current.users--
    if (current.users === 0) {
      delete globalHolder[holderKey]
      await running.stop()
    }
  }
}
