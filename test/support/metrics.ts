// Scraping a component's /metrics in tests: the address from its stdout, the samples
// parsed from the Prometheus text format.
import { request } from 'node:http';

/** The /metrics URL a component printed (`metrics at http://HOST:PORT/metrics`). */
export function metricsUrl(stdout: string): string {
  const m = /metrics at (http:\/\/\S+\/metrics)/.exec(stdout);
  if (!m) throw new Error(`no metrics address in: ${stdout}`);
  return m[1]!;
}

export function httpGet(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Samples by `name{label="value",...}` exactly as exposed (labels in the order given). */
export async function scrape(url: string): Promise<Map<string, number>> {
  const r = await httpGet(url);
  if (r.status !== 200) throw new Error(`${url} answered ${r.status}: ${r.body}`);
  const out = new Map<string, number>();
  for (const line of r.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** One sample of a per-machine metric (undefined when absent). */
export function sample(
  m: Map<string, number>,
  name: string,
  machine: string,
  extra = '',
): number | undefined {
  return m.get(`${name}{machine="${machine}"${extra}}`);
}
