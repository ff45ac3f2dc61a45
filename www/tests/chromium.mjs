// How the tests and benchmarks launch headless Chromium (playwright-core):
// Debian's build unless CHROMIUM names another, without the background
// services that would add noise or network traffic.
export const CHROMIUM = {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};
