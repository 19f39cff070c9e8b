// The offline search of digest: loads the index shards (one per archive page) with <script> tags, which work
// from file:// too, and matches every word of the query as a substring of a paper's folded text. No network
// besides this site's own files; seed text is only ever set as textContent.
(function () {
  "use strict";
  var papers = [];
  var expected = 0;
  var loaded = 0;
  var LIMIT = 100;

  function fold(text) {
    return text.normalize("NFKC").toLowerCase();
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render() {
    var input = document.getElementById("q");
    var status = document.getElementById("status");
    var list = document.getElementById("results");
    var terms = fold(input.value).split(/\s+/).filter(Boolean);
    list.textContent = "";
    if (!terms.length) {
      status.textContent = "输入中文或英文关键词，在全部往期论文中查找（离线也可用）。";
      return;
    }
    var hits = papers.filter(function (p) {
      return terms.every(function (t) { return p.text.indexOf(t) !== -1; });
    });
    hits.sort(function (a, b) { return b.issue - a.issue; });
    hits.slice(0, LIMIT).forEach(function (p) {
      var href = "../issues/" + p.issue + "/index.html#" + encodeURIComponent(p.anchor);
      var item = el("li");
      var link = el("a", "zh", p.zh);
      link.href = href;
      var en = el("span", "en", p.en);
      en.lang = "en";
      var meta = el("span", "meta", "第 " + p.issue + " 期" + (p.topics.length ? " · " + p.topics.join("、") : ""));
      item.append(link, en, meta);
      list.append(item);
    });
    var more = hits.length > LIMIT ? "，显示最新的 " + LIMIT + " 篇" : "";
    var pending = loaded < expected ? "（索引加载中…）" : "";
    status.textContent = hits.length ? "找到 " + hits.length + " 篇论文" + more + pending : "没有找到论文" + pending;
  }

  window.digestSearch = {
    manifest: function (m) {
      expected = m.shards;
      for (var k = m.shards; k >= 1; k--) {
        var script = document.createElement("script");
        script.src = "shard-" + k + ".js";
        document.body.append(script);
      }
      if (!expected) render();
    },
    addShard: function (k, items) {
      papers = papers.concat(items);
      loaded += 1;
      render();
    },
  };

  document.addEventListener("DOMContentLoaded", function () {
    var input = document.getElementById("q");
    var initial = new URLSearchParams(location.search).get("q");
    if (initial) input.value = initial;
    input.addEventListener("input", render);
    input.form.addEventListener("submit", function (event) { event.preventDefault(); render(); });
  });
})();
