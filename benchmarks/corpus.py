"""Realistic synthetic seed corpora for the benchmarks: deterministic given a seed number.

A corpus is a folder of seed files of 10 entries each, shaped like the real ones in `seeds/`::

    ## <English title>
    [<中文标题>](https://arxiv.org/abs/YYMM.NNNNN)

    <CJK abstract, sometimes several paragraphs>

Abstract lengths (in characters) are drawn from the 23 real abstracts of `seeds/*.txt` (measured once, below,
with a +-15% jitter); 3 of those 23 are multi-paragraph, so about one abstract in eight is. Text mixes CJK
phrases, CJK punctuation, Latin words and numbers, and now and then a URL. About 0.5% of entries repeat an
earlier paper's id, often in another link form (`v2`, `/pdf/`), which the parser must report as a duplicate.

File `k` of a corpus (0-based) is always the same bytes for the same `seed`, whatever else is generated, so a
corpus can be grown one week at a time (`add_week`).
"""

from __future__ import annotations

import random
from pathlib import Path

ENTRIES_PER_FILE = 10
DUPLICATE_RATE = 0.005

# Measured from seeds/*.txt (`digest.seeds.read_seeds`): characters per abstract paragraph, per entry.
REAL_ABSTRACT_PARAGRAPHS: tuple[tuple[int, ...], ...] = (
    (367,), (414,), (484,), (116, 144, 165), (158, 226, 108), (487,), (564,), (502,), (486,),
    (101, 135, 107, 191, 134), (588,), (520,), (326,), (424,), (421,), (298,), (450,), (426,), (499,),
    (499,), (596,), (274,), (235,),
)  # fmt: skip
REAL_TITLE_EN_LENGTHS = (59, 124, 53, 76, 69, 54, 81, 77, 82, 82, 69, 62, 71, 69, 93, 59, 75, 119, 115, 56, 61, 66, 67)
REAL_TITLE_ZH_LENGTHS = (16, 35, 23, 20, 16, 14, 27, 21, 35, 23, 25, 22, 34, 35, 28, 32, 27, 51, 42, 20, 31, 18, 28)

_CJK_PHRASES = (  # noqa: SIM905 (a word list reads better as one string)
    "扩散模型 在 多种 图像 生成 任务 中 表现 出色 本研究 我们 提出 了 一种 无需 调优 的 个性化 方法 框架 与 依赖 "
    "传统 不同 允许 所有 用户 共享 同一 个体 调整 此前 身份 保持 复杂 提示 遵循 视觉 质量 之间 难以 平衡 导致 参考 "
    "过度 依赖 需要 大幅 改变 表情 姿态 多样性 有限 为此 合成 配对 数据 机制 增强 包含 三个 文本 编码器 可训练 "
    "全并行 注意力 架构 提升 忠实度 以及 从粗到细 多阶段 微调 策略 逐步 实验 表明 现有 最先进 模型 奠定 坚实 基础 "
    "人类 评估 结果 显示 以往 吸引力 理解 讽刺 幽默 视觉-语言 艰巨 挑战性 检测 判断 是否 具有 解释 为何 给定 一半 "
    "选项 选择 另一半 完整 高质量 数据集 涵盖 艺术 风格 描绘 正常 场景 同时 有趣 冲突 尽管 多模态 问答 描述 零样本 "
    "设置 无论 自动化 人工 表现 不佳 此外 发布 真实 照片 供 进一步 研究 使用 代码 获取 模拟器 性能 数值 天气 预报 "
    "相媲美 尤其 系统 运行 因此 越来越多 大模型 开始 应用 预测 降尺度 临近 领域 正朝着 基础 能够 通用 语言 推理 "
    "能力 强化 学习 奖励 信号 对齐 偏好 训练 样本 效率 显著 优于 基线 开源 社区 基准 测试 覆盖 分析 误差 鲁棒性"
).split()
_PUNCT = "，，，。、；："
_LATIN = (  # noqa: SIM905 (a word list reads better as one string)
    "LLM Transformer GPT-4 CLIP ViT LoRA RLHF benchmark zero-shot SOTA API GPU HPC AI 3D RGB-D token "
    "YesBut Prithvi WxC ImageNet COCO MMLU fine-tuning encoder decoder"
).split()
_TITLE_WORDS = (  # noqa: SIM905 (a word list reads better as one string)
    "Learning Large Language Models Diffusion Vision Efficient Towards Scalable Benchmark Reasoning Agents "
    "Multimodal Generation Robust Understanding via with for and of the a Self-Supervised Foundation Model "
    "Retrieval Augmented Alignment Preference Optimization Evaluating Dataset Image Video Speech Graph Neural"
).split()


def _sentence(rng: random.Random, length: int) -> str:
    """About `length` characters of CJK-heavy abstract text."""
    parts: list[str] = []
    size = 0
    while size < length:
        roll = rng.random()
        if roll < 0.06:
            word = f" {rng.choice(_LATIN)} "
        elif roll < 0.08:
            word = f" {rng.randrange(2, 5000)} "
        elif roll < 0.0815:
            word = f" https://github.com/{rng.choice(_TITLE_WORDS).lower()}/{rng.randrange(10**6):06d} "
        else:
            word = rng.choice(_CJK_PHRASES)
        parts.append(word)
        size += len(word)
        if rng.random() < 0.12:
            parts.append(rng.choice(_PUNCT))
            size += 1
    return "".join(parts).strip() + "。"


def _abstract(rng: random.Random) -> list[str]:
    """Paragraph lengths from the real distribution (jittered), then text of those lengths."""
    shape = rng.choice(REAL_ABSTRACT_PARAGRAPHS)
    return [_sentence(rng, max(40, round(n * rng.uniform(0.85, 1.15)))) for n in shape]


def _title_en(rng: random.Random) -> str:
    target = rng.choice(REAL_TITLE_EN_LENGTHS)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < target:
        words.append(rng.choice(_TITLE_WORDS))
    words[0] = words[0].capitalize()
    return " ".join(words)


def _title_zh(rng: random.Random) -> str:
    return _sentence(rng, rng.choice(REAL_TITLE_ZH_LENGTHS)).rstrip("。" + _PUNCT + " ")


def arxiv_id(index: int) -> str:
    """The arXiv-style id of the `index`-th paper of every corpus: YYMM.NNNNN, 20,000 papers a month."""
    month = index // 20_000
    year, mon = 15 + month // 12, 1 + month % 12
    return f"{year:02d}{mon:02d}.{index % 20_000 + 1:05d}"


def _link(paper: str, rng: random.Random, duplicate: bool) -> str:
    if not duplicate:
        return f"https://arxiv.org/abs/{paper}"
    return rng.choice(
        (
            f"https://arxiv.org/abs/{paper}",
            f"https://arxiv.org/abs/{paper}v2",
            f"https://arxiv.org/pdf/{paper}",
            f"https://arxiv.org/pdf/{paper}v2.pdf",
        )
    )


def file_name(index: int) -> str:
    """Seed file names sort in corpus order (the order papers are published)."""
    return f"{index:06d}.txt"


def seed_file_text(index: int, seed: int = 0) -> str:
    """The text of file `index` of corpus `seed`: 10 entries; a few repeat a paper of an earlier file."""
    rng = random.Random(f"{seed}:{index}")
    chunks: list[str] = []
    for slot in range(ENTRIES_PER_FILE):
        paper_index = index * ENTRIES_PER_FILE + slot
        duplicate = index > 0 and rng.random() < DUPLICATE_RATE
        paper = arxiv_id(rng.randrange(index * ENTRIES_PER_FILE)) if duplicate else arxiv_id(paper_index)
        body = "\n\n".join(_abstract(rng))
        chunks.append(f"## {_title_en(rng)}\n[{_title_zh(rng)}]({_link(paper, rng, duplicate)})\n\n{body}\n")
    return "\n".join(chunks)


def write_seed_file(folder: Path, index: int, seed: int = 0) -> Path:
    """Write file `index` of corpus `seed` into `folder` and return its path."""
    path = folder / file_name(index)
    path.write_text(seed_file_text(index, seed), encoding="utf-8")
    return path


def write_corpus(folder: Path, entries: int, start_file: int = 0, seed: int = 0) -> list[Path]:
    """Write `entries` entries (rounded up to whole files of 10) as files `start_file`, `start_file + 1`, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    files = -(-entries // ENTRIES_PER_FILE)
    return [write_seed_file(folder, index, seed) for index in range(start_file, start_file + files)]


def corpus_files(folder: Path) -> int:
    """How many corpus files a folder holds (the index of the next week's file)."""
    return sum(1 for p in folder.glob("*.txt") if p.stem.isdigit())


def add_week(folder: Path, seed: int = 0) -> Path:
    """Add one new week: the next file of 10 entries after the ones already in `folder`."""
    return write_seed_file(folder, corpus_files(folder), seed)


if __name__ == "__main__":
    import sys

    print(seed_file_text(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
