"""Texts of the routing benchmark, written for it (none comes from the routing questions, and none
was changed after seeing how `route` did on them).

PLAIN_PROFILES: the three experts as a new user registers them, one sentence and 3-4 skills each:
`plain` was written for this benchmark, `plain-study` for the routing study of issue 9, and
`plain-terse` (skills of a word or two) when the knowledge a profile implies was added to `route`,
before that change was run on any question; the three show how much the wording of short profiles
alone moves the numbers.
OFF_TOPIC: what nobody in the developer-support community should take. MORE_OFF_TOPIC: more of
the same, from the study and from this benchmark, ending with near-misses that share a word with a
domain (a pet python, a shipping container, a ship's helm, vector graphics, an index of a book).
PARAPHRASES: each names its domain's problem in words that no community profile uses.
"""

from __future__ import annotations

Profiles = dict[str, tuple[str, list[str]]]  # domain -> (description, skills)

PLAIN_PROFILES: dict[str, Profiles] = {
    "plain": {
        "python": ("Python developer who helps with code, libraries and tooling.",
                   ["writing and debugging Python code", "pip, venv and dependency problems",
                    "async programming and web frameworks like FastAPI and Django", "data work with pandas and NumPy"]),
        "milvus": ("Specialist in Milvus, the open-source vector database.",
                   ["creating collections and choosing vector indexes", "similarity search and filtering with pymilvus",
                    "running Milvus standalone, in a cluster or as Milvus Lite",
                    "performance tuning and capacity planning for embeddings"]),
        "devops": ("Infrastructure engineer for containers, clusters and delivery pipelines.",
                   ["Docker images and docker compose", "Kubernetes deployments, Helm and ingress",
                    "CI/CD with GitHub Actions and GitLab", "monitoring, logging and networking"]),
    },
    "plain-study": {
        "python": ("I help with Python programming questions.",
                   ["Python language and standard library", "pip, virtual environments and packaging", "asyncio",
                    "libraries like requests, pandas and Flask"]),
        "milvus": ("I answer questions about the Milvus vector database.",
                   ["Milvus collections, indexes and search", "pymilvus", "Milvus Lite", "Zilliz Cloud"]),
        "devops": ("I handle infrastructure and deployment problems.",
                   ["Docker and Kubernetes", "Helm charts and ingress", "CI pipelines", "Prometheus and networking"]),
    },
    "plain-terse": {
        "python": ("Answers questions about Python.",
                   ["Python syntax, types and errors", "installing packages and managing environments",
                    "testing and debugging", "web and data libraries"]),
        "milvus": ("Helps people use the Milvus vector database.",
                   ["storing and searching embeddings", "indexes and query performance", "pymilvus client",
                    "deploying Milvus"]),
        "devops": ("Looks after servers, containers and deployments.",
                   ["Docker", "Kubernetes", "continuous integration", "cloud infrastructure and monitoring"]),
    },
}

OFF_TOPIC = [
    "How long should I rest a roast chicken before carving it?",
    "What is a good substitute for buttermilk in pancakes?",
    "Which houseplants survive in a north-facing room?",
    "How do I get red wine stains out of a wool carpet?",
    "My bicycle chain keeps slipping when I change gears, what should I adjust?",
    "What are some tips for running my first marathon?",
    "How do I make a pivot table in a spreadsheet to sum sales by month?",
    "My phone battery drains very fast overnight, how can I fix it?",
    "Which countries can I visit without a visa on a US passport?",
    "How do I ask my manager for a raise?",
    "What is the difference between a Roth IRA and a traditional IRA?",
    "Can you recommend a good fantasy novel series?",
    "Why does my sourdough bread come out dense?",
    "How often should I change the oil in my car?",
    "What causes the northern lights?",
    "How do I teach my dog to stop pulling on the leash?",
]

MORE_OFF_TOPIC = [
    # the routing study's
    "How do I make a fluffy omelette?", "Who won the football World Cup in 2014?",
    "What caused the fall of the Roman Empire?", "How can I fall asleep faster at night?",
    "What is a good stretching routine after a long run?", "How do I write a heartfelt wedding toast for my sister?",
    "Why is the sky blue?", "How much should I tip at a restaurant in the US?",
    "Is it better to rent or buy a house right now?", "How do I get my toddler to eat vegetables?",
    "When is castling not allowed in chess?",
    # this benchmark's
    "How do I descale an electric kettle?", "What's a good name for a golden retriever puppy?",
    "How many calories does a slice of pizza have?", "Can you explain the plot of Hamlet in simple words?",
    "What should I pack for a week of hiking in Scotland?", "How do I get rid of fruit flies in my kitchen?",
    "Which is healthier, butter or margarine?", "How do I write a cover letter for a nursing job?",
    "What is the capital of Australia?", "My toddler has a fever of 39 degrees, should I worry?",
    "How do I replace the chain on a chainsaw?",
    # near-misses: a word of a domain in another sense (the study's, then this benchmark's)
    "What's the weather in Paris this weekend?", "What should I feed my pet python snake?",
    "How do I convert a shipping container into a tiny home?", "How do I steer a sailboat at the helm in strong wind?",
    "Which vector graphics editor is best for drawing a logo?",
    "How do I repot a snake plant without hurting the roots?",
    "What's the best container for storing flour so it stays fresh?",
    "How do I index the pages of a printed cookbook I'm writing?", "Where can I watch the old Monty Python sketches?",
    "How do I fix a leaking pipe under the kitchen sink?", "How do I deploy a sail on a small dinghy?",
    "What's the cheapest way to ship a parcel to Canada?",
]
NEAR_MISSES = 12  # the last ones of MORE_OFF_TOPIC

PARAPHRASES: list[tuple[str, str]] = [
    ("My script cannot find a module I just added with the package installer", "python"),
    ("The dictionary I pass to my function comes back changed, how do I avoid that?", "python"),
    ("Nearest-neighbour lookups over my sentence encodings return poor matches", "milvus"),
    ("Where should I keep a few million numeric fingerprints of sentences so the most similar ones come back "
     "in milliseconds?", "milvus"),
    ("My workloads keep crashing and coming back after every rollout", "devops"),
    ("Our automated jobs started failing at the step that uploads the artifact to our internal store", "devops"),
]
