"""Everyday sentences that no expert of a technical community should take: what `route` compares a
question with before it names an expert (see `routing.rank_experts`).

A question is nobody's business when one of these fits it better than every registered expert
does. Both sides are cosines of the same embedder on the same question, so the test scales with
the experts: one-sentence profiles and long profiles with knowledge are judged alike, where an
absolute floor tuned on one of them refuses real questions on the other (measured on the routing
benchmark: plain one-sentence profiles top-1 0.713 with the old 0.20 floor, 0.813 with this test).

Written for the routing study of issue 9 on other topics and in other words than its off-topic
probes, and never compared with the routing questions. Embedded once per process, at the first
`route` (`expertise.Expertise`).
"""

from __future__ import annotations

BACKGROUND: tuple[str, ...] = (
    # food and home
    "What temperature should I bake salmon at?", "How long do hard-boiled eggs keep in the fridge?",
    "Can I freeze cooked rice?", "What spices go well with roasted carrots?",
    "How do I remove mould from bathroom grout?", "What is the best way to clean a cast iron pan?",
    "How often should I water a cactus?", "When should I plant tulip bulbs?",
    "How do I unclog a bathroom sink without chemicals?", "What colour should I paint a small bedroom?",
    # health and body
    "How many hours of sleep does a teenager need?", "Is it safe to exercise with a cold?",
    "What are the symptoms of dehydration?", "How can I improve my posture at a desk?",
    "How much protein should I eat per day?", "What helps with a sore throat?",
    # family, people, feelings
    "How do I tell my friend I can't come to her party?", "What is a good gift for a ten-year-old?",
    "How do I help my child with homework anxiety?", "How do I deal with a rude neighbour?",
    "What should I say in a condolence card?", "How can I make new friends after moving to a new city?",
    # money, work, law
    "How does compound interest work?", "Should I pay off debt or save first?",
    "How do I prepare for a job interview?", "What should be on a one-page CV?",
    "How do I dispute a charge on my credit card?", "What does a notary public do?",
    # travel and places
    "What is the best time of year to visit Japan?", "Do I need an adapter for plugs in the UK?",
    "How early should I arrive at the airport for an international flight?", "What are the top sights in Rome?",
    "Is tap water safe to drink in Mexico City?", "How do I get from the airport to downtown Chicago?",
    # nature, science, history, culture
    "How far is the Moon from the Earth?", "Why do leaves change colour in autumn?",
    "Who painted the ceiling of the Sistine Chapel?", "When did the Berlin Wall fall?",
    "What is the largest ocean on the planet?", "How do bees make honey?",
    "What language is spoken in Brazil?", "Who wrote Pride and Prejudice?",
    "How do volcanoes form?", "What is the difference between a frog and a toad?",
    # sports, hobbies, entertainment
    "How many players are on a basketball team?", "What are the rules of offside in soccer?",
    "How do I tune a guitar by ear?", "What is a good beginner knitting project?",
    "Which board games are fun for four players?", "How do I start birdwatching?",
    "What film won best picture last year?", "How do I improve my swimming technique?",
    # vehicles and everyday things
    "Why is my car making a squeaking noise when I brake?", "How do I change a flat tyre?",
    "How do I pick a good mattress?", "What is the best way to store winter clothes?",
    "How do I reset my home wifi router password?", "How do I remove a stripped screw?",
    "My dishwasher leaves spots on glasses, what can I do?", "How do I jump-start a car battery?",
)
