// Bar charts for the benchmark docs: an SVG written by hand (no dependency), turned into
// a PNG with rsvg-convert (Debian: apt-get install librsvg2-bin) or ImageMagick's
// convert when one is installed; otherwise only the SVG is written.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface Bar {
  label: string;
  value: number;
  /** Printed at the end of the bar (default: the value). */
  text?: string;
  color?: string;
}

export interface Panel {
  title: string;
  bars: Bar[];
  /** Draw a dashed line here (e.g. a target), with its label. */
  marker?: { value: number; label: string };
}

export interface Chart {
  title: string;
  subtitle?: string;
  panels: Panel[];
  width?: number;
}

export const COLORS = {
  envseal: '#2f6fdf',
  envsealAlt: '#7aa5f0',
  kubeseal: '#e0771b',
  sealedSecrets: '#e0771b',
  sops: '#3a9a4a',
  grey: '#888888',
  node: '#b0b0b0',
};

const escapeXml = (text: string) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

export function chartSvg(chart: Chart): string {
  const width = chart.width ?? 1040;
  const labelWidth = 330;
  const valueRoom = 210;
  const barHeight = 22;
  const gap = 8;
  const plotWidth = width - labelWidth - valueRoom - 20;
  const parts: string[] = [];
  let y = 34;
  parts.push(`<text x="20" y="${y}" font-size="20" font-weight="bold">${escapeXml(chart.title)}</text>`);
  if (chart.subtitle) {
    y += 22;
    parts.push(`<text x="20" y="${y}" font-size="13" fill="#555">${escapeXml(chart.subtitle)}</text>`);
  }
  y += 16;
  for (const panel of chart.panels) {
    y += 26;
    parts.push(`<text x="20" y="${y}" font-size="15" font-weight="bold">${escapeXml(panel.title)}</text>`);
    y += 10;
    const max = Math.max(...panel.bars.map((b) => (Number.isFinite(b.value) ? b.value : 0)), panel.marker?.value ?? 0) || 1;
    const top = y;
    for (const bar of panel.bars) {
      const w = Number.isFinite(bar.value) ? Math.max(1, (bar.value / max) * plotWidth) : 0;
      parts.push(`<text x="${labelWidth - 8}" y="${y + barHeight - 6}" font-size="13" text-anchor="end">${escapeXml(bar.label)}</text>`);
      parts.push(`<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${bar.color ?? COLORS.grey}" rx="2"/>`);
      const text = bar.text ?? (Number.isFinite(bar.value) ? String(bar.value) : 'not measured');
      parts.push(`<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + barHeight - 6}" font-size="13">${escapeXml(text)}</text>`);
      y += barHeight + gap;
    }
    if (panel.marker) {
      const x = labelWidth + (panel.marker.value / max) * plotWidth;
      parts.push(
        `<line x1="${x.toFixed(1)}" y1="${top - 4}" x2="${x.toFixed(1)}" y2="${y - gap + 4}" stroke="#c22" stroke-width="1.5" stroke-dasharray="5,4"/>`,
      );
      parts.push(`<text x="${x.toFixed(1)}" y="${y + 10}" font-size="11" fill="#c22" text-anchor="middle">${escapeXml(panel.marker.label)}</text>`);
      y += 14;
    }
  }
  y += 20;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`;
}

/**
 * Writes the chart as `<pngBase>.png` (with the SVG it is drawn from beside `svgDir`),
 * when a converter is installed; returns the PNG path, or undefined (then only the SVG).
 */
export function writeChart(chart: Chart, pngBase: string, svgDir: string): string | undefined {
  const svgPath = `${svgDir}/${basename(pngBase)}.svg`;
  const pngPath = `${pngBase}.png`;
  mkdirSync(svgDir, { recursive: true });
  mkdirSync(dirname(pngPath), { recursive: true });
  writeFileSync(svgPath, chartSvg(chart));
  const converters: [string, string[]][] = [
    ['rsvg-convert', ['-f', 'png', '-o', pngPath, svgPath]],
    ['/usr/bin/convert', [svgPath, pngPath]],
  ];
  for (const [command, args] of converters) {
    try {
      execFileSync(command, args, { stdio: 'ignore' });
      return pngPath;
    } catch {
      // try the next converter
    }
  }
  process.stderr.write(`note: no SVG converter found (apt-get install librsvg2-bin); wrote only ${svgPath}\n`);
  return undefined;
}
