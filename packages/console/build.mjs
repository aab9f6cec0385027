// Builds the web console into the controller's build: packages/controller/dist/console/
// (index.html + assets/main-<hash>.js|css). The controller serves that directory on its API
// listener (packages/controller/src/api/console-assets.ts). Run by the root `npm run build`
// after `tsc -b` (which type-checks this package); esbuild only strips types and bundles.
// No source maps in the shipped build: they would double its size and the sources are public.
import { build } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const OUT_DIR = process.env.BULKHEAD_CONSOLE_OUT ?? join(here, '../controller/dist/console');

export async function buildConsole(outDir = OUT_DIR) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(join(outDir, 'assets'), { recursive: true });
  const result = await build({
    entryPoints: [join(here, 'src/main.tsx')],
    bundle: true,
    format: 'esm',
    target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
    minify: true,
    legalComments: 'none',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: join(outDir, 'assets'),
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    metafile: true,
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
  const js = outputs.find((f) => f.endsWith('.js'));
  const css = outputs.find((f) => f.endsWith('.css'));
  if (!js || !css) throw new Error(`console build produced no js/css: ${outputs.join(', ')}`);
  // No inline script or style anywhere: the controller's CSP forbids both.
  const html = [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="color-scheme" content="light dark">',
    '<meta name="referrer" content="no-referrer">',
    '<title>Bulkhead console</title>',
    '<link rel="icon" href="data:,">',
    `<link rel="stylesheet" href="/console/assets/${css}">`,
    `<script type="module" src="/console/assets/${js}"></script>`,
    '</head>',
    '<body>',
    '<div id="app"></div>',
    '<noscript>The Bulkhead console needs JavaScript. The <code>bulkhead</code> CLI and the HTTPS API work without it.</noscript>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
  writeFileSync(join(outDir, 'index.html'), html);
  return { outDir, js, css, files: outputs.map((f) => relative(outDir, join(outDir, 'assets', f))) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await buildConsole();
  console.log(`console built into ${relative(process.cwd(), r.outDir) || '.'}: ${r.js}, ${r.css}`);
}
