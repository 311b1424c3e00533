import json

# ~1 KB OpenAI-style chat request
BODY = json.dumps({
    "model": "llama-3.1-8b-instruct",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. " * 6},
        {"role": "user", "content": "Explain the difference between TCP and UDP in detail please. " * 10},
    ],
    "temperature": 0.7,
    "max_tokens": 256,
    "stream": False,
    "user": "bench",
}).encode()

if __name__ == "__main__":
    print(len(BODY))
