/**
 * The vitest projects of the monorepo: one per package, and the bounded fault suite (`chaos/`).
 *
 * Vitest 3.2 deprecates loading this file directly, so the root `vitest.config.ts` reads this list
 * into `test.projects` instead (no deprecation warning, one source of truth).
 */
const projects: Array<string> = ["packages/*/vitest.config.ts", "chaos/vitest.config.ts"]
export default projects
