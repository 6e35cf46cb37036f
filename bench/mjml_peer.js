// The reference MJML compiler (npm mjml) on the same MJML sources as ours, via its API.
//
//   node bench/mjml_peer.js NODE_MODULES MAX_ITERATIONS MAX_SECONDS FILE.mjml...
//
// For each file: one warm-up compile, then up to MAX_ITERATIONS compiles (stopping early after
// MAX_SECONDS). Prints one JSON line: {file: {per_second, iterations, html_bytes, errors}}.
// Options match ours (mjml-python): comments dropped, no web fonts added.
const path = require('path');
const fs = require('fs');
const [modules, maxIter, maxSeconds, ...files] = process.argv.slice(2);
const mjml = require(path.join(modules, 'mjml'));
const options = { keepComments: false, fonts: {}, validationLevel: 'soft' };

(async () => {
  const out = {};
  for (const file of files) {
    const src = fs.readFileSync(file, 'utf8');
    const first = await mjml(src, options);
    const start = process.hrtime.bigint();
    let n = 0;
    let elapsed = 0;
    while (n < Number(maxIter) && elapsed < Number(maxSeconds)) {
      await mjml(src, options);
      n += 1;
      elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    }
    out[file] = { per_second: n / elapsed, iterations: n, html_bytes: Buffer.byteLength(first.html),
                  errors: first.errors.map((e) => e.formattedMessage || String(e)) };
  }
  console.log(JSON.stringify(out));
})().catch((err) => { console.error(err); process.exit(1); });
