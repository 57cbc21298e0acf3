// Deadline countdowns: every <time class="countdown" datetime="..."> shows the time left, once a
// second, including in rows htmx swaps in later.
(function () {
  function left(ms) {
    if (ms <= 0) return "due now";
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60);
    if (d) return d + "d " + h + "h left";
    if (h) return h + "h " + m + "m left";
    return m + "m " + (s % 60) + "s left";
  }
  function tick() {
    document.querySelectorAll("time.countdown").forEach(function (el) {
      var due = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(due)) el.textContent = left(due - Date.now());
    });
  }
  tick();
  setInterval(tick, 1000);
})();
