/**
 * Vitest global setup of the kv project: a private PostgreSQL cluster (or `DATABASE_URL`) for the PostgreSQL
 * backend's tests, stopped when the project finishes. Tests take a fresh database each (`TestPostgres.freshDatabase`).
 */
import type { TestProject } from "vitest/node"
import { type PostgresInfo, start } from "@warren/kv/TestPostgres"

declare module "vitest" {
  export interface ProvidedContext {
    postgres: PostgresInfo
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const running = await start()
  project.provide("postgres", running.info)
  return () => running.stop()
}
