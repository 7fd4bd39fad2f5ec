/**
 * Where the built browser worker lives: the volunteer page (volunteer.html, volunteer.css), its
 * script (page.js) and the Web Worker (worker.js), with source maps. `npm run build:browser`
 * (scripts/build-browser.js) writes them to dist/browser/; the coordinator serves them
 * (createVolunteerRoutes({ assetsDir: BROWSER_ASSETS_DIR, ... }) in @gradhub/coordinator).
 */
import { fileURLToPath } from 'node:url';

/** Absolute path of the built browser assets directory (dist/browser/, with a trailing separator). */
export const BROWSER_ASSETS_DIR: string = fileURLToPath(new URL('./browser/', import.meta.url));

/** The files a coordinator needs from BROWSER_ASSETS_DIR to serve the volunteer page. */
export const BROWSER_ASSET_FILES: readonly string[] = ['volunteer.html', 'volunteer.css', 'page.js', 'worker.js'];
